//! A small reader over hcl-edit that keeps line numbers, shared by the config file
//! and the policy language: both report an unknown key or a bad value by name and
//! line. Only literal values are accepted (no interpolation, functions or
//! variables): configuration and policies are data.

use hcl_edit::Span;
use hcl_edit::expr::{Expression, ObjectKey};
use hcl_edit::structure::{Body as EditBody, Structure};

/// A parse or shape error with the 1-based line it refers to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct Error {
    pub line: usize,
    pub message: String,
}

impl Error {
    pub fn new(line: usize, message: impl Into<String>) -> Self {
        Error {
            line,
            message: message.into(),
        }
    }
}

/// A literal value with the line it starts on.
#[derive(Debug, Clone, PartialEq)]
pub struct Value {
    pub line: usize,
    pub kind: Kind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    Null,
    Bool(bool),
    Number(serde_json::Number),
    String(String),
    Array(Vec<Value>),
    Object(Vec<(String, Value)>),
}

impl Value {
    pub fn type_name(&self) -> &'static str {
        match self.kind {
            Kind::Null => "null",
            Kind::Bool(_) => "a bool",
            Kind::Number(_) => "a number",
            Kind::String(_) => "a string",
            Kind::Array(_) => "a list",
            Kind::Object(_) => "an object",
        }
    }

    /// The value as JSON (for parameter lists in policies).
    pub fn to_json(&self) -> serde_json::Value {
        match &self.kind {
            Kind::Null => serde_json::Value::Null,
            Kind::Bool(value) => serde_json::Value::Bool(*value),
            Kind::Number(value) => serde_json::Value::Number(value.clone()),
            Kind::String(value) => serde_json::Value::String(value.clone()),
            Kind::Array(items) => items.iter().map(Value::to_json).collect(),
            Kind::Object(entries) => serde_json::Value::Object(
                entries
                    .iter()
                    .map(|(key, value)| (key.clone(), value.to_json()))
                    .collect(),
            ),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Attribute {
    pub key: String,
    pub line: usize,
    pub value: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Block {
    pub ident: String,
    pub labels: Vec<String>,
    pub line: usize,
    pub body: Body,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Body {
    pub attributes: Vec<Attribute>,
    pub blocks: Vec<Block>,
}

/// Parses HCL text into a [`Body`] of literal values.
pub fn parse(text: &str) -> Result<Body, Error> {
    let body = hcl_edit::parser::parse_body(text).map_err(|error| {
        Error::new(
            error.location().line(),
            format!("syntax error: {}", error.message()),
        )
    })?;
    let lines = LineIndex::new(text);
    convert_body(&body, &lines)
}

struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    fn new(text: &str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(index, _)| index + 1));
        LineIndex { starts }
    }

    fn line(&self, span: Option<std::ops::Range<usize>>) -> usize {
        let offset = span.map(|range| range.start).unwrap_or(0);
        match self.starts.binary_search(&offset) {
            Ok(index) => index + 1,
            Err(index) => index,
        }
    }
}

fn convert_body(body: &EditBody, lines: &LineIndex) -> Result<Body, Error> {
    let mut converted = Body::default();
    for structure in body.iter() {
        match structure {
            Structure::Attribute(attribute) => {
                let line = lines.line(attribute.span());
                converted.attributes.push(Attribute {
                    key: attribute.key.as_str().to_owned(),
                    line,
                    value: convert_expression(&attribute.value, lines)?,
                });
            }
            Structure::Block(block) => converted.blocks.push(Block {
                ident: block.ident.as_str().to_owned(),
                labels: block
                    .labels
                    .iter()
                    .map(|label| label.as_str().to_owned())
                    .collect(),
                line: lines.line(block.span()),
                body: convert_body(&block.body, lines)?,
            }),
        }
    }
    Ok(converted)
}

fn convert_expression(expression: &Expression, lines: &LineIndex) -> Result<Value, Error> {
    let line = lines.line(expression.span());
    let kind = match expression {
        Expression::Null(_) => Kind::Null,
        Expression::Bool(value) => Kind::Bool(*value.value()),
        Expression::Number(number) => {
            let number = number.value();
            let json = if let Some(value) = number.as_u64() {
                serde_json::Number::from(value)
            } else if let Some(value) = number.as_i64() {
                serde_json::Number::from(value)
            } else {
                number
                    .as_f64()
                    .and_then(serde_json::Number::from_f64)
                    .ok_or_else(|| Error::new(line, "number out of range"))?
            };
            Kind::Number(json)
        }
        Expression::String(value) => Kind::String(value.value().clone()),
        Expression::Array(array) => Kind::Array(
            array
                .iter()
                .map(|item| convert_expression(item, lines))
                .collect::<Result<_, _>>()?,
        ),
        Expression::Object(object) => {
            let mut entries = Vec::new();
            for (key, value) in object.iter() {
                let key = match key {
                    ObjectKey::Ident(ident) => ident.as_str().to_owned(),
                    ObjectKey::Expression(Expression::String(text)) => text.value().clone(),
                    ObjectKey::Expression(_) => {
                        return Err(Error::new(line, "object keys must be names or strings"));
                    }
                };
                entries.push((key, convert_expression(value.expr(), lines)?));
            }
            Kind::Object(entries)
        }
        Expression::Parenthesis(inner) => return convert_expression(inner.inner(), lines),
        Expression::StringTemplate(_) | Expression::HeredocTemplate(_) => {
            return Err(Error::new(
                line,
                "templates and interpolation (\"${...}\") are not supported here",
            ));
        }
        _ => {
            return Err(Error::new(
                line,
                "only literal values (strings, numbers, bools, lists, objects) are allowed",
            ));
        }
    };
    Ok(Value { line, kind })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_structure_and_lines() {
        let body =
            parse("a = 1\n\nblock \"x\" \"y\" {\n  b = [\"s\", true]\n  c = { k = null }\n}\n")
                .unwrap();
        assert_eq!(body.attributes[0].key, "a");
        assert_eq!(body.attributes[0].line, 1);
        let block = &body.blocks[0];
        assert_eq!(block.ident, "block");
        assert_eq!(block.labels, vec!["x", "y"]);
        assert_eq!(block.line, 3);
        assert_eq!(block.body.attributes[0].line, 4);
        assert_eq!(
            block.body.attributes[0].value.to_json(),
            serde_json::json!(["s", true])
        );
        assert_eq!(block.body.attributes[1].line, 5);
    }

    #[test]
    fn syntax_errors_carry_a_line() {
        let error = parse("a = 1\nb = \n").unwrap_err();
        assert!(error.line >= 2, "{error}");
    }

    #[test]
    fn interpolation_and_variables_are_refused() {
        assert_eq!(parse("a = \"${x}\"\n").unwrap_err().line, 1);
        assert_eq!(parse("\na = var.x\n").unwrap_err().line, 2);
    }
}
