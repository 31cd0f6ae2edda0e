//! Qualified device names, `vendor.com/class=name`, with SPEC.md's character rules
//! (the reference parser's ValidateVendorName/ClassName/DeviceName).

/// A parsed `vendor/class=name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Qualified {
    pub vendor: String,
    pub class: String,
    pub name: String,
}

impl Qualified {
    pub fn kind(&self) -> String {
        format!("{}/{}", self.vendor, self.class)
    }
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("invalid CDI device name {0:?}: expected vendor.com/class=name")]
    Shape(String),
    #[error("invalid CDI vendor {0:?}: {1}")]
    Vendor(String, &'static str),
    #[error("invalid CDI class {0:?}: {1}")]
    Class(String, &'static str),
    #[error("invalid CDI device name {0:?}: {1}")]
    Device(String, &'static str),
}

/// True when `s` has the shape of a CDI name (not a `/dev/...` path): docker and
/// podman use the same test to tell `--device` forms apart.
pub fn is_qualified_name(s: &str) -> bool {
    !s.starts_with('/') && s.contains('=') && s.contains('/')
}

pub fn parse_qualified_name(s: &str) -> Result<Qualified, Error> {
    let (kind, name) = s.split_once('=').ok_or_else(|| Error::Shape(s.into()))?;
    let (vendor, class) = parse_kind(kind).map_err(|e| match e {
        Error::Shape(_) => Error::Shape(s.into()),
        e => e,
    })?;
    check_device_name(name)?;
    Ok(Qualified {
        vendor,
        class,
        name: name.into(),
    })
}

/// `vendor/class` as a spec's `kind`.
pub fn parse_kind(kind: &str) -> Result<(String, String), Error> {
    let (vendor, class) = kind
        .split_once('/')
        .ok_or_else(|| Error::Shape(kind.into()))?;
    check_vendor(vendor)?;
    check_class(class)?;
    Ok((vendor.into(), class.into()))
}

fn check_vendor(v: &str) -> Result<(), Error> {
    let bad = |why| Error::Vendor(v.into(), why);
    edges(v, |c| c.is_ascii_alphabetic()).map_err(bad)?;
    if !v
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return Err(bad("only letters, digits, '-', '_' and '.' allowed"));
    }
    Ok(())
}

fn check_class(c: &str) -> Result<(), Error> {
    let bad = |why| Error::Class(c.into(), why);
    edges(c, |c| c.is_ascii_alphabetic()).map_err(bad)?;
    // SPEC.md v0.6.0 allowed dots in the class.
    if !c
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return Err(bad("only letters, digits, '-', '_' and '.' allowed"));
    }
    Ok(())
}

pub(crate) fn check_device_name(n: &str) -> Result<(), Error> {
    let bad = |why| Error::Device(n.into(), why);
    edges(n, |c| c.is_ascii_alphanumeric()).map_err(bad)?;
    if !n
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c))
    {
        return Err(bad("only letters, digits, '-', '_', '.' and ':' allowed"));
    }
    Ok(())
}

/// Non-empty, first char passes `first`, last is a letter or digit.
fn edges(s: &str, first: impl Fn(char) -> bool) -> Result<(), &'static str> {
    let (Some(a), Some(z)) = (s.chars().next(), s.chars().last()) else {
        return Err("empty");
    };
    if !first(a) {
        return Err("bad first character");
    }
    if !z.is_ascii_alphanumeric() {
        return Err("must end with a letter or digit");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn names() {
        let q = parse_qualified_name("nvidia.com/gpu=GPU-1a:2").unwrap();
        assert!(parse_qualified_name("v.com/g.pu=0").is_ok());
        assert_eq!(
            (q.kind(), q.name.as_str()),
            ("nvidia.com/gpu".into(), "GPU-1a:2")
        );
        assert!(parse_qualified_name("nvidia.com/gpu").is_err());
        assert!(matches!(
            parse_qualified_name("1vendor/gpu=0"),
            Err(Error::Vendor(..))
        ));
        assert!(matches!(
            parse_qualified_name("v.com/g+pu=0"),
            Err(Error::Class(..))
        ));
        assert!(matches!(
            parse_qualified_name("v.com/gpu=a b"),
            Err(Error::Device(..))
        ));
        assert!(matches!(
            parse_qualified_name("v.com/gpu=x-"),
            Err(Error::Device(..))
        ));
        assert!(is_qualified_name("example.com/dev=null"));
        assert!(!is_qualified_name("/dev/null"));
        assert!(!is_qualified_name("/dev/a=b"));
    }
}
