//! An error's text with its causes, for errors whose own text says little
//! (reqwest's is often just "error sending request"; the cause says
//! "connection refused").

/// `error`, then each of its sources, joined by ": ".
pub fn describe(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    #[derive(Debug)]
    struct Outer(std::io::Error);

    impl std::fmt::Display for Outer {
        fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            formatter.write_str("error sending request")
        }
    }

    impl std::error::Error for Outer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn the_causes_follow_the_error() {
        let refused =
            std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
        assert_eq!(
            super::describe(&Outer(refused)),
            "error sending request: connection refused"
        );
        assert_eq!(
            super::describe(&std::io::Error::other("no cause")),
            "no cause"
        );
    }
}
