//! The `audit` blocks: devices declared in the file rather than through `sys/audit`.

use super::{boolean, string};
use crate::hcl::{self, Kind};

pub(super) fn parse_audit(block: &hcl::Block) -> Result<crate::audit::DeviceConfig, hcl::Error> {
    use crate::audit;
    let [kind, path] = block.labels.as_slice() else {
        return Err(hcl::Error::new(
            block.line,
            "audit takes a type and a path, as in audit \"file\" \"file\" { file_path = \"...\" }",
        ));
    };
    let invalid = |error: audit::Error| hcl::Error::new(block.line, error.to_string());
    let kind = audit::Kind::parse(kind).map_err(invalid)?;
    let path = audit::normalize_path(path).map_err(invalid)?;
    let mut description = String::new();
    let mut local = false;
    let mut options = std::collections::BTreeMap::new();
    for attribute in &block.body.attributes {
        let value = &attribute.value;
        match attribute.key.as_str() {
            "description" => description = string(value, "description")?,
            "local" => local = boolean(value, "local")?,
            key => {
                let text = match &value.kind {
                    Kind::String(text) => text.clone(),
                    Kind::Bool(flag) => flag.to_string(),
                    Kind::Number(number) => number.to_string(),
                    _ => {
                        return Err(hcl::Error::new(
                            value.line,
                            format!("{key} must be a string, number or bool"),
                        ));
                    }
                };
                options.insert(key.to_owned(), text);
            }
        }
    }
    if let Some(nested) = block.body.blocks.first() {
        return Err(hcl::Error::new(
            nested.line,
            format!("unknown block {:?} in audit", nested.ident),
        ));
    }
    let device = audit::DeviceConfig {
        path,
        kind,
        description,
        options,
        local,
    };
    device.options().map_err(invalid)?;
    Ok(device)
}
