//! The two database plugins (PostgreSQL and MySQL/MariaDB) on sqlx: connecting
//! with the configured credentials, running statement templates, and the
//! defaults Vault uses when a role gives none.
//!
//! Statements are templates filled by text (DDL takes no bind parameters): the
//! values put in (`{{name}}`, `{{password}}`, `{{expiration}}`) come from safe
//! alphabets ([`super::names`]), so no quoting can break out of them. Error
//! messages come from the database, with any password removed.

use std::str::FromStr as _;
use std::time::Duration;

use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, ConnectOptions as _, Connection as _};

/// How long acquiring a connection may take.
/// What a user name or password escapes in a URL's userinfo (RFC 3986 unreserved
/// characters stay as they are).
const USERINFO: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// Which database a connection speaks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plugin {
    Postgres,
    MySql,
}

impl Plugin {
    /// Vault's plugin names.
    pub fn parse(name: &str) -> Option<Plugin> {
        match name {
            "postgresql-database-plugin" => Some(Plugin::Postgres),
            "mysql-database-plugin"
            | "mysql-aurora-database-plugin"
            | "mysql-rds-database-plugin"
            | "mysql-legacy-database-plugin" => Some(Plugin::MySql),
            _ => None,
        }
    }

    /// The longest user name the database accepts.
    pub fn username_limit(self) -> usize {
        match self {
            Plugin::Postgres => 63,
            Plugin::MySql => 32,
        }
    }

    /// What renews a dynamic user when its role says nothing.
    pub fn default_renew(self) -> Vec<String> {
        match self {
            Plugin::Postgres => {
                vec![r#"ALTER ROLE "{{name}}" VALID UNTIL '{{expiration}}';"#.into()]
            }
            Plugin::MySql => Vec::new(),
        }
    }

    /// What changes an existing user's password (static roles, root rotation)
    /// when the configuration says nothing.
    pub fn default_rotation(self) -> Vec<String> {
        match self {
            Plugin::Postgres => {
                vec![r#"ALTER ROLE "{{name}}" WITH PASSWORD '{{password}}';"#.into()]
            }
            Plugin::MySql => vec!["ALTER USER '{{name}}'@'%' IDENTIFIED BY '{{password}}';".into()],
        }
    }
}

/// A user name or value as it goes into a template.
pub struct Values<'a> {
    pub name: &'a str,
    pub password: Option<&'a str>,
    /// `2006-01-02 15:04:05-0700`.
    pub expiration: Option<&'a str>,
}

/// `statements` with their templates filled.
pub fn render(statements: &[String], values: &Values<'_>) -> Vec<String> {
    statements
        .iter()
        .map(|statement| {
            let mut text = statement
                .replace("{{name}}", values.name)
                .replace("{{username}}", values.name);
            if let Some(password) = values.password {
                text = text.replace("{{password}}", password);
            }
            if let Some(expiration) = values.expiration {
                text = text.replace("{{expiration}}", expiration);
            }
            text
        })
        .collect()
}

/// Splits `text` into statements at semicolons outside quotes (for MySQL, which
/// runs one statement at a time); empty pieces are dropped.
pub fn split(text: &str) -> Vec<String> {
    let mut statements = Vec::new();
    let mut current = String::new();
    let mut quote: Option<char> = None;
    for character in text.chars() {
        match (quote, character) {
            (Some(open), c) if c == open => quote = None,
            (None, '\'' | '"' | '`') => quote = Some(character),
            (None, ';') => {
                statements.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(character);
    }
    statements.push(current);
    statements
        .into_iter()
        .map(|statement| statement.trim().to_owned())
        .filter(|statement| !statement.is_empty())
        .collect()
}

/// A database's message, with `secrets` (passwords, raw or URL-encoded) removed.
pub fn scrub(message: &str, secrets: &[&str]) -> String {
    let mut text = message.to_owned();
    for secret in secrets.iter().filter(|secret| secret.len() >= 4) {
        text = text.replace(secret, "[redacted]");
        for set in [USERINFO, percent_encoding::NON_ALPHANUMERIC] {
            let encoded = percent_encoding::utf8_percent_encode(secret, set).to_string();
            text = text.replace(&encoded, "[redacted]");
        }
    }
    text
}

/// An open pool to one configured database.
#[derive(Clone)]
pub enum Pool {
    Postgres(PgPool),
    MySql(MySqlPool),
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(match self {
            Pool::Postgres(_) => "Pool(postgres)",
            Pool::MySql(_) => "Pool(mysql)",
        })
    }
}

/// `connection_url` with `{{username}}` and `{{password}}` filled in (encoded).
fn fill_url(template: &str, username: &str, password: &str) -> String {
    let encode = |text: &str| percent_encoding::utf8_percent_encode(text, USERINFO).to_string();
    template
        .replace("{{username}}", &encode(username))
        .replace("{{password}}", &encode(password))
}

/// `connection_url` as reads show it: a password written into it (in the
/// user part, `user:pass@host`, or a `password=` parameter) is replaced by
/// `*****`; the `{{password}}` template stays, as it holds nothing.
pub fn redact_url(url: &str) -> String {
    const HIDDEN: &str = "*****";
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (format!("{scheme}://"), rest),
        None => (String::new(), url),
    };
    let (head, query) = match rest.split_once('?') {
        Some((head, query)) => (head, Some(query)),
        None => (rest, None),
    };
    let mut redacted = scheme;
    match head.rsplit_once('@') {
        Some((credentials, host)) => {
            match credentials.split_once(':') {
                Some((user, password)) if password != "{{password}}" => {
                    redacted.push_str(user);
                    redacted.push(':');
                    redacted.push_str(HIDDEN);
                }
                _ => redacted.push_str(credentials),
            }
            redacted.push('@');
            redacted.push_str(host);
        }
        None => redacted.push_str(head),
    }
    if let Some(query) = query {
        redacted.push('?');
        let parameters: Vec<String> = query
            .split('&')
            .map(|parameter| match parameter.split_once('=') {
                Some((key, value))
                    if key.eq_ignore_ascii_case("password") && value != "{{password}}" =>
                {
                    format!("{key}={HIDDEN}")
                }
                _ => parameter.to_owned(),
            })
            .collect();
        redacted.push_str(&parameters.join("&"));
    }
    redacted
}

/// A Go-style MySQL DSN as Vault configurations use it
/// (`user:pass@tcp(host:port)/db?params`) as a `mysql://` URL; URLs pass as
/// they are.
fn mysql_url(dsn: &str) -> String {
    if dsn.starts_with("mysql://") || dsn.starts_with("mariadb://") {
        return dsn.to_owned();
    }
    let (credentials, rest) = match dsn.rsplit_once('@') {
        Some((credentials, rest)) => (format!("{credentials}@"), rest),
        None => (String::new(), dsn),
    };
    let rest = rest
        .strip_prefix("tcp(")
        .and_then(|rest| rest.split_once(')'))
        .map(|(address, path)| format!("{address}{path}"))
        .unwrap_or_else(|| rest.to_owned());
    format!("mysql://{credentials}{rest}")
}

impl Pool {
    /// A pool of up to `max_connections`; connects lazily unless `verify`, which
    /// opens one connection now and checks it answers.
    pub async fn open(
        plugin: Plugin,
        connection_url: &str,
        username: &str,
        password: &str,
        max_connections: u32,
        verify: bool,
    ) -> Result<Pool, String> {
        let url = fill_url(connection_url, username, password);
        let secrets = [password];
        let fail = |error: sqlx::Error| scrub(&error.to_string(), &secrets);
        let pool = match plugin {
            Plugin::Postgres => {
                let options = PgConnectOptions::from_str(&url)
                    .map_err(|_| "connection_url is not a valid postgresql:// URL".to_owned())?;
                let options = if connection_url.contains("{{username}}") || username.is_empty() {
                    options
                } else {
                    options.username(username).password(password)
                };
                // sqlx logs statements (at DEBUG, and slow ones at WARN) with
                // the passwords in them.
                let options = options.disable_statement_logging();
                Pool::Postgres(
                    PgPoolOptions::new()
                        .max_connections(max_connections.max(1))
                        .acquire_timeout(ACQUIRE_TIMEOUT)
                        .idle_timeout(Duration::from_secs(300))
                        .connect_lazy_with(options),
                )
            }
            Plugin::MySql => {
                let options = MySqlConnectOptions::from_str(&mysql_url(&url)).map_err(|_| {
                    "connection_url is not a valid mysql:// URL (or a DSN such as user:pass@tcp(host:port)/)"
                        .to_owned()
                })?;
                let options = if connection_url.contains("{{username}}") || username.is_empty() {
                    options
                } else {
                    options.username(username).password(password)
                };
                let options = options.disable_statement_logging();
                Pool::MySql(
                    MySqlPoolOptions::new()
                        .max_connections(max_connections.max(1))
                        .acquire_timeout(ACQUIRE_TIMEOUT)
                        .idle_timeout(Duration::from_secs(300))
                        .connect_lazy_with(options),
                )
            }
        };
        if verify {
            match &pool {
                Pool::Postgres(pool) => {
                    let mut connection = pool.acquire().await.map_err(fail)?;
                    connection.ping().await.map_err(fail)?;
                }
                Pool::MySql(pool) => {
                    let mut connection = pool.acquire().await.map_err(fail)?;
                    connection.ping().await.map_err(fail)?;
                }
            }
        }
        Ok(pool)
    }

    pub fn plugin(&self) -> Plugin {
        match self {
            Pool::Postgres(_) => Plugin::Postgres,
            Pool::MySql(_) => Plugin::MySql,
        }
    }

    pub async fn close(&self) {
        match self {
            Pool::Postgres(pool) => pool.close().await,
            Pool::MySql(pool) => pool.close().await,
        }
    }

    /// Runs `statements` as one unit where the database can (PostgreSQL: one
    /// transaction; MySQL, whose DDL commits by itself: one by one, stopping at
    /// the first error). `secrets` are removed from any error.
    pub async fn run(&self, statements: &[String], secrets: &[&str]) -> Result<(), Failure> {
        let fail = |error: sqlx::Error| Failure {
            refused: matches!(error, sqlx::Error::Database(_)),
            message: scrub(&database_message(&error), secrets),
        };
        match self {
            Pool::Postgres(pool) => {
                let mut attempt = 1;
                loop {
                    match run_postgres(pool, statements).await {
                        Err(error) if attempt < CONFLICT_ATTEMPTS && is_conflict(&error) => {
                            // The transaction was rolled back: nothing of it is left.
                            attempt += 1;
                            tokio::time::sleep(Duration::from_millis(2 * attempt as u64)).await;
                        }
                        outcome => return outcome.map_err(fail),
                    }
                }
            }
            Pool::MySql(pool) => {
                let mut connection = pool.acquire().await.map_err(fail)?;
                for statement in statements.iter().flat_map(|text| split(text)) {
                    sqlx::raw_sql(AssertSqlSafe(statement))
                        .execute(&mut *connection)
                        .await
                        .map_err(fail)?;
                }
                Ok(())
            }
        }
    }

    /// Whether a user (PostgreSQL: role) named `name` exists.
    pub async fn user_exists(&self, name: &str) -> Result<bool, String> {
        let fail = |error: sqlx::Error| database_message(&error);
        match self {
            Pool::Postgres(pool) => {
                sqlx::query_scalar::<_, i32>("SELECT 1 FROM pg_roles WHERE rolname = $1")
                    .bind(name)
                    .fetch_optional(pool)
                    .await
                    .map(|row| row.is_some())
                    .map_err(fail)
            }
            Pool::MySql(pool) => {
                sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM mysql.user WHERE user = ?")
                    .bind(name)
                    .fetch_one(pool)
                    .await
                    .map(|count| count > 0)
                    .map_err(fail)
            }
        }
    }

    /// Ends every session of user `name`.
    pub async fn terminate_sessions(&self, name: &str) -> Result<(), String> {
        let fail = |error: sqlx::Error| database_message(&error);
        match self {
            Pool::Postgres(pool) => sqlx::query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1",
            )
            .bind(name)
            .execute(pool)
            .await
            .map(drop)
            .map_err(fail),
            Pool::MySql(pool) => {
                let sessions: Vec<u64> = sqlx::query_scalar(
                    "SELECT CAST(ID AS UNSIGNED) FROM information_schema.PROCESSLIST WHERE USER = ?",
                )
                .bind(name)
                .fetch_all(pool)
                .await
                .map_err(fail)?;
                for session in sessions {
                    // A session that ended meanwhile is fine.
                    let _ = sqlx::raw_sql(AssertSqlSafe(format!("KILL {session}")))
                        .execute(pool)
                        .await;
                }
                Ok(())
            }
        }
    }

    /// Vault's default revocation: end the user's sessions, take back what it was
    /// granted or owns, drop it. A user that is already gone is fine.
    pub async fn drop_user(&self, name: &str) -> Result<(), String> {
        self.terminate_sessions(name).await?;
        if !self.user_exists(name).await? {
            return Ok(());
        }
        let statements: Vec<String> = match self {
            Pool::Postgres(_) => vec![
                format!(r#"REASSIGN OWNED BY "{name}" TO CURRENT_USER"#),
                format!(r#"DROP OWNED BY "{name}""#),
                format!(r#"DROP ROLE IF EXISTS "{name}""#),
            ],
            Pool::MySql(_) => vec![format!("DROP USER IF EXISTS '{name}'@'%'")],
        };
        self.run(&statements, &[]).await.map_err(String::from)
    }
}

/// Why statements did not run: the database refused one (`refused`: the
/// statements' fault), or it could not be reached or answered (its fault).
#[derive(Debug)]
pub struct Failure {
    pub refused: bool,
    /// The database's message, without secrets.
    pub message: String,
}

impl From<Failure> for String {
    fn from(failure: Failure) -> String {
        failure.message
    }
}

/// Attempts of a PostgreSQL transaction that lost a race (see [`is_conflict`]).
const CONFLICT_ATTEMPTS: u32 = 8;

async fn run_postgres(pool: &PgPool, statements: &[String]) -> Result<(), sqlx::Error> {
    let mut transaction = pool.begin().await?;
    for statement in statements {
        sqlx::raw_sql(AssertSqlSafe(statement.clone()))
            .execute(&mut *transaction)
            .await?;
    }
    transaction.commit().await
}

/// Whether PostgreSQL refused a transaction only because another one touched the
/// same catalog row at once: concurrent `GRANT`s on one table fail with "tuple
/// concurrently updated", besides serialization failures and deadlocks. Running
/// it again is safe (it was rolled back) and usually succeeds.
fn is_conflict(error: &sqlx::Error) -> bool {
    let sqlx::Error::Database(database) = error else {
        return false;
    };
    matches!(database.code().as_deref(), Some("40001" | "40P01"))
        || database.message().contains("concurrently updated")
}

/// The database's own message when there is one, else sqlx's description.
fn database_message(error: &sqlx::Error) -> String {
    match error {
        sqlx::Error::Database(database) => database.message().to_owned(),
        sqlx::Error::PoolTimedOut => "timed out connecting to the database".to_owned(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_in_connection_urls_are_redacted() {
        let check = |url: &str, expected: &str| assert_eq!(redact_url(url), expected, "{url}");
        check(
            "postgresql://admin:s3cr%40t@db:5432/app?sslmode=disable",
            "postgresql://admin:*****@db:5432/app?sslmode=disable",
        );
        check(
            "postgresql://{{username}}:{{password}}@db/app",
            "postgresql://{{username}}:{{password}}@db/app",
        );
        check(
            "root:p@ss@tcp(127.0.0.1:3306)/",
            "root:*****@tcp(127.0.0.1:3306)/",
        );
        check(
            "postgres://db/app?user=admin&password=hunter2&sslmode=require",
            "postgres://db/app?user=admin&password=*****&sslmode=require",
        );
        check("postgres://admin@db/app", "postgres://admin@db/app");
        check("postgres://db/app", "postgres://db/app");
    }

    #[test]
    fn templates_fill_and_split() {
        let statements = vec![
            r#"CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';"#
                .to_owned(),
        ];
        let rendered = render(
            &statements,
            &Values {
                name: "v-app-abc",
                password: Some("Pw-123"),
                expiration: Some("2026-01-01 00:00:00+0000"),
            },
        );
        assert_eq!(
            rendered,
            vec![
                r#"CREATE ROLE "v-app-abc" WITH LOGIN PASSWORD 'Pw-123' VALID UNTIL '2026-01-01 00:00:00+0000';"#
            ]
        );
        assert_eq!(
            split("CREATE USER 'a;b'@'%' IDENTIFIED BY 'x'; GRANT SELECT ON *.* TO 'a;b'@'%';\n"),
            vec![
                "CREATE USER 'a;b'@'%' IDENTIFIED BY 'x'",
                "GRANT SELECT ON *.* TO 'a;b'@'%'"
            ]
        );
        assert!(split(" ; ;").is_empty());
    }

    #[test]
    fn passwords_are_scrubbed_raw_and_encoded() {
        let message = "cannot connect to postgres://admin:p%40ss-word@db/ with p@ss-word";
        assert_eq!(
            scrub(message, &["p@ss-word"]),
            "cannot connect to postgres://admin:[redacted]@db/ with [redacted]"
        );
        assert_eq!(
            fill_url("postgresql://{{username}}:{{password}}@h/db", "a", "p@s/s"),
            "postgresql://a:p%40s%2Fs@h/db"
        );
    }

    #[test]
    fn vault_style_mysql_dsns_become_urls() {
        assert_eq!(
            mysql_url("admin:p%40ss@tcp(127.0.0.1:3306)/"),
            "mysql://admin:p%40ss@127.0.0.1:3306/"
        );
        assert_eq!(mysql_url("mysql://a:b@h:1/db"), "mysql://a:b@h:1/db");
        assert_eq!(
            mysql_url("tcp(h:1)/db?tls=false"),
            "mysql://h:1/db?tls=false"
        );
    }

    #[test]
    fn plugins() {
        assert_eq!(
            Plugin::parse("postgresql-database-plugin"),
            Some(Plugin::Postgres)
        );
        assert_eq!(Plugin::parse("mysql-database-plugin"), Some(Plugin::MySql));
        assert_eq!(Plugin::parse("oracle-database-plugin"), None);
    }
}
