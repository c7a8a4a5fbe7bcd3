//! An error and its causes as one line, each said once.
//!
//! anyhow's `{:#}` prints every error of the chain joined by `: `. Some errors already
//! end their own message with their cause's (zbus's I/O errors, tempfile's path errors:
//! `failed to connect to …: No such file or directory (os error 2)`) and also give it
//! as their `source()`, so the chain says it twice. [`text`] leaves out a cause whose
//! message has already been said.

/// `error` and each of its causes, joined by `: `, but a cause already said is not
/// repeated.
pub fn text(error: &anyhow::Error) -> String {
    let mut said = String::new();
    for cause in error.chain() {
        let message = cause.to_string();
        if said.is_empty() {
            said = message;
        } else if !said.contains(&message) {
            said.push_str(": ");
            said.push_str(&message);
        }
    }
    said
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fmt;

    /// An error that, like zbus's and tempfile's, says its cause and also gives it.
    #[derive(Debug)]
    struct SaysItsCause(std::io::Error);

    impl fmt::Display for SaysItsCause {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "failed to connect to `unix:path=/x`: {}", self.0)
        }
    }

    impl std::error::Error for SaysItsCause {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn a_cause_already_said_is_not_said_again() {
        let error = anyhow::Error::new(SaysItsCause(std::io::Error::from_raw_os_error(2)))
            .context("connecting");
        assert_eq!(
            format!("{error:#}").matches("(os error 2)").count(),
            2,
            "the duplication this is for"
        );
        assert_eq!(
            text(&error),
            "connecting: failed to connect to `unix:path=/x`: No such file or directory (os error 2)"
        );
    }

    #[test]
    fn causes_not_yet_said_are_joined() {
        let error = anyhow::Error::new(std::io::Error::from_raw_os_error(13))
            .context("open directory /run/web/scoreboard")
            .context("reading web.service");
        assert_eq!(
            text(&error),
            "reading web.service: open directory /run/web/scoreboard: Permission denied (os error 13)"
        );
    }
}
