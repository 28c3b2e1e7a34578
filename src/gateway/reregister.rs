//! A gateway that forgets an account (a restarted gateway, a lost registration) answers
//! `unknown_account`. Payments and refunds of that tenant would then wait forever, so this
//! wrapper registers the account again, with the tenant's current webhook secret read from
//! storage, and retries the request once.

use std::sync::Arc;

use async_trait::async_trait;
use payrail_actors::domain::TenantId;
use payrail_actors::ports::{
    AccountRegistration, ChargeRequest, Gateway, GatewayError, RefundRequest,
};
use secrecy::ExposeSecret as _;

use crate::store::Db;

pub struct ReRegistering {
    inner: Arc<dyn Gateway>,
    db: Db,
    /// Where the gateway sends this deployment's webhooks.
    webhook_url: String,
}

impl ReRegistering {
    pub fn new(inner: Arc<dyn Gateway>, db: Db, webhook_url: String) -> Self {
        Self {
            inner,
            db,
            webhook_url,
        }
    }

    /// Registers `account` again; the original `UnknownAccount` if the tenant is gone or the
    /// registration fails.
    async fn register_again(&self, account: TenantId) -> Result<(), GatewayError> {
        let tenant = match self.db.get_tenant(account).await {
            Ok(Some(tenant)) => tenant,
            Ok(None) => return Err(GatewayError::UnknownAccount),
            Err(e) => return Err(GatewayError::Unavailable(e.to_string())),
        };
        let registration = AccountRegistration {
            account,
            webhook_url: self.webhook_url.clone(),
            webhook_secret: tenant.webhook_secret.expose_secret().to_owned(),
        };
        self.inner.register_account(&registration).await?;
        tracing::info!(%account, "gateway had forgotten the account; registered it again");
        Ok(())
    }
}

#[async_trait]
impl Gateway for ReRegistering {
    async fn register_account(
        &self,
        registration: &AccountRegistration,
    ) -> Result<(), GatewayError> {
        self.inner.register_account(registration).await
    }

    async fn create_charge(&self, request: &ChargeRequest) -> Result<String, GatewayError> {
        match self.inner.create_charge(request).await {
            Err(GatewayError::UnknownAccount) => {
                self.register_again(request.account).await?;
                self.inner.create_charge(request).await
            }
            answer => answer,
        }
    }

    async fn create_refund(&self, request: &RefundRequest) -> Result<String, GatewayError> {
        match self.inner.create_refund(request).await {
            Err(GatewayError::UnknownAccount) => {
                self.register_again(request.account).await?;
                self.inner.create_refund(request).await
            }
            answer => answer,
        }
    }
}
