//! The OpenAPI schema of a gateway webhook body, as `webhooks::receive` reads it: one event or a
//! batch of one account's events, any other fields ignored (the gateway may add some). A body
//! matching both shapes is read as a batch, so the document says `anyOf`, not `oneOf`.

use std::borrow::Cow;

use serde::Serialize;
use utoipa::openapi::schema::AnyOfBuilder;
use utoipa::openapi::{Ref, RefOr, Schema};
use utoipa::{PartialSchema, ToSchema};

use super::constraints;

/// One event, or a batch of up to 500 events of one account.
pub struct GatewayWebhookSchema;

impl PartialSchema for GatewayWebhookSchema {
    fn schema() -> RefOr<Schema> {
        AnyOfBuilder::new()
            .item(Ref::from_schema_name(GatewayBatchSchema::name()))
            .item(Ref::from_schema_name(GatewayEventSchema::name()))
            .description(Some(
                "One event, or a batch of up to 500 events of one account. Fields not listed \
                 are ignored.",
            ))
            .into()
    }
}

impl ToSchema for GatewayWebhookSchema {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("GatewayWebhook")
    }

    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((
            GatewayBatchSchema::name().into(),
            GatewayBatchSchema::schema(),
        ));
        <GatewayBatchSchema as ToSchema>::schemas(schemas);
        schemas.push((
            GatewayEventSchema::name().into(),
            GatewayEventSchema::schema(),
        ));
        <GatewayEventSchema as ToSchema>::schemas(schemas);
    }
}

/// Events of one account. Each is applied, or counted as a duplicate, ignored or rejected (an
/// event naming another account is rejected).
#[allow(dead_code)]
#[derive(Serialize, ToSchema)]
#[schema(as = GatewayBatch)]
pub struct GatewayBatchSchema {
    /// The tenant id (`ten_…`) whose webhook secret signs the request.
    #[schema(schema_with = constraints::tenant_id)]
    account: String,
    #[schema(max_items = 500)]
    events: Vec<GatewayBatchEventSchema>,
}

/// One event on its own; `account` names the tenant whose webhook secret signs it.
#[allow(dead_code)]
#[derive(Serialize, ToSchema)]
#[schema(as = GatewayEvent)]
pub struct GatewayEventSchema {
    #[schema(schema_with = constraints::tenant_id)]
    account: String,
    /// The gateway's event id; a repeat is a duplicate. An empty one, or one over 255
    /// characters, is rejected.
    #[schema(example = "evt_gw_123")]
    id: String,
    /// `payment.processing`, `payment.succeeded`, `payment.failed`, `refund.succeeded` or
    /// `refund.failed`; any other type is counted as rejected, not refused, so a gateway that
    /// adds one is not made to retry forever.
    #[serde(rename = "type")]
    #[schema(example = "payment.succeeded")]
    kind: String,
    #[serde(default)]
    data: GatewayEventDataSchema,
}

/// An event in a batch: `account`, if given, must be the batch's (else it is rejected).
#[allow(dead_code)]
#[derive(Serialize, ToSchema)]
#[schema(as = GatewayBatchEvent)]
pub struct GatewayBatchEventSchema {
    #[schema(example = "evt_gw_123")]
    id: String,
    #[serde(rename = "type")]
    #[schema(example = "payment.succeeded")]
    kind: String,
    #[schema(nullable = true)]
    account: Option<String>,
    #[serde(default)]
    data: GatewayEventDataSchema,
}

/// What an outcome is about. `paymentId` is needed by every type, `gatewayReference` by
/// `payment.processing`, `refundId` by the refund types; an event without what its type needs,
/// or whose amount or currency differ from the payment's, is rejected.
#[allow(dead_code)]
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = GatewayEventData)]
pub struct GatewayEventDataSchema {
    payment_id: Option<String>,
    refund_id: Option<String>,
    gateway_reference: Option<String>,
    #[schema(schema_with = constraints::signed_amount)]
    amount: Option<i64>,
    currency: Option<String>,
    failure_code: Option<String>,
    failure_message: Option<String>,
}
