//! `seal "<type>" { ... }` blocks: how the root key is protected when no
//! operator types key shares. `static` (OpenBao's shape: a 32-byte key from a
//! file or an environment variable, with a previous one for rotation) is
//! built; a block may say `disabled = "true"` (the seal being migrated away
//! from).

use super::{boolean, string, unknown};
use crate::hcl;

/// One `seal` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seal {
    pub kind: SealKind,
    /// `disabled`: the seal the data is migrated away from.
    pub disabled: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SealKind {
    /// `seal "static"`: keys named by id, each `file://PATH` or `env://VAR`
    /// holding 32 bytes raw, hex or base64.
    Static {
        current_key_id: String,
        current_key: String,
        previous_key_id: Option<String>,
        previous_key: Option<String>,
    },
}

impl Seal {
    /// The type `sys/seal-status` reports.
    pub fn type_name(&self) -> &'static str {
        match self.kind {
            SealKind::Static { .. } => "static",
        }
    }
}

pub(super) fn parse_seal(block: &hcl::Block) -> Result<Seal, hcl::Error> {
    let kind = match block.labels.as_slice() {
        [kind] => kind.as_str(),
        _ => {
            return Err(hcl::Error::new(
                block.line,
                "a seal block takes one label, its type: seal \"static\" { ... }",
            ));
        }
    };
    let mut disabled = false;
    let mut fields = std::collections::BTreeMap::new();
    for attribute in &block.body.attributes {
        let key = attribute.key.as_str();
        match key {
            "disabled" => disabled = boolean(&attribute.value, "disabled")?,
            "current_key_id" | "current_key" | "previous_key_id" | "previous_key"
                if kind == "static" =>
            {
                fields.insert(key, string(&attribute.value, key)?);
            }
            other => return Err(unknown(attribute.line, other, &format!("seal \"{kind}\""))),
        }
    }
    if let Some(nested) = block.body.blocks.first() {
        return Err(hcl::Error::new(
            nested.line,
            format!("seal \"{kind}\" takes no blocks"),
        ));
    }
    let kind = match kind {
        "static" => {
            let required = |key: &str| {
                fields
                    .get(key)
                    .filter(|value| !value.is_empty())
                    .cloned()
                    .ok_or_else(|| {
                        hcl::Error::new(block.line, format!("seal \"static\" needs {key}"))
                    })
            };
            let current_key_id = required("current_key_id")?;
            let current_key = required("current_key")?;
            let previous_key_id = fields.get("previous_key_id").filter(|id| !id.is_empty());
            let previous_key = fields.get("previous_key").filter(|key| !key.is_empty());
            if previous_key_id.is_some() != previous_key.is_some() {
                return Err(hcl::Error::new(
                    block.line,
                    "seal \"static\": previous_key_id and previous_key go together",
                ));
            }
            if previous_key_id == Some(&current_key_id) {
                return Err(hcl::Error::new(
                    block.line,
                    "seal \"static\": previous_key_id must differ from current_key_id",
                ));
            }
            for source in std::iter::once(&current_key).chain(previous_key) {
                if !source.starts_with("file://") && !source.starts_with("env://") {
                    return Err(hcl::Error::new(
                        block.line,
                        "seal \"static\": a key is file:///path or env://VARIABLE",
                    ));
                }
            }
            SealKind::Static {
                current_key_id,
                current_key,
                previous_key_id: previous_key_id.cloned(),
                previous_key: previous_key.cloned(),
            }
        }
        other => {
            return Err(hcl::Error::new(
                block.line,
                format!("unsupported seal type {other:?}: coffer builds \"static\""),
            ));
        }
    };
    Ok(Seal { kind, disabled })
}
