//! Error messages that never repeat what the client sent. A request body can hold a card number
//! or a CVC in any field and in any shape, so a parser's message keeps only its words and the
//! names of our own fields: quoted and back-quoted values are dropped.

/// The longest back-quoted word kept (our field and variant names are far shorter).
const NAME_MAX_CHARS: usize = 40;

/// `message` without the values it quotes: back-quoted segments survive only when they are a
/// plain name (letters and underscores, like `invoiceId`); double-quoted ones never do.
pub fn without_values(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(start) = rest.find(['`', '"']) {
        out.push_str(&rest[..start]);
        let quote = &rest[start..start + 1];
        let after = &rest[start + 1..];
        let Some(end) = after.find(quote) else {
            rest = "";
            break;
        };
        let quoted = &after[..end];
        if quote == "`" && is_name(quoted) {
            out.push('`');
            out.push_str(quoted);
            out.push('`');
        } else {
            out.push_str("(value)");
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= NAME_MAX_CHARS
        && s.bytes().all(|b| b.is_ascii_alphabetic() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::without_values;

    #[test]
    fn values_go_and_field_names_stay() {
        assert_eq!(
            without_values(
                "invalid type: integer `4242424242424242`, expected a string at line 1 column 9"
            ),
            "invalid type: integer (value), expected a string at line 1 column 9"
        );
        assert_eq!(
            without_values("invalid type: string \"737\", expected u32"),
            "invalid type: string (value), expected u32"
        );
        assert_eq!(
            without_values("unknown field `pin`, expected one of `type`, `number`, `expMonth`"),
            "unknown field `pin`, expected one of `type`, `number`, `expMonth`"
        );
        assert_eq!(
            without_values("unknown field `4242 4242`, expected `cvc`"),
            "unknown field (value), expected `cvc`"
        );
        assert_eq!(without_values("invalid value: `12"), "invalid value: ");
    }
}
