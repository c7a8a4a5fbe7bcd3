//! User and group names for messages: "owned by www-data (uid 33)" reads better than a
//! number. From `/etc/passwd` and `/etc/group` (the files every system has; names from
//! other NSS sources are shown as numbers), read at most [`MAX_DATABASE`] bytes, and
//! only when a message is being written.

use std::fmt;
use std::io::Read as _;

/// The most of `/etc/passwd` or `/etc/group` read: room for ~10,000 entries.
const MAX_DATABASE: u64 = 1 << 20;

/// A uid as a message shows it: `www-data (uid 33)`, or `uid 33` when it has no name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct User(pub u32);

/// A gid as a message shows it: `www-data (gid 33)`, or `gid 33`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Group(pub u32);

impl fmt::Display for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match name_of("/etc/passwd", self.0) {
            Some(name) => write!(f, "{name} (uid {})", self.0),
            None => write!(f, "uid {}", self.0),
        }
    }
}

impl fmt::Display for Group {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match name_of("/etc/group", self.0) {
            Some(name) => write!(f, "{name} (gid {})", self.0),
            None => write!(f, "gid {}", self.0),
        }
    }
}

fn name_of(database: &str, id: u32) -> Option<String> {
    let mut text = String::new();
    std::fs::File::open(database)
        .ok()?
        .take(MAX_DATABASE)
        .read_to_string(&mut text)
        .ok()?;
    find(&text, id)
}

/// The name of the first entry with `id` in the third field of a passwd or group file:
/// `name:password:id:…`. Only printable names without spaces are shown.
fn find(database: &str, id: u32) -> Option<String> {
    database.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let _password = fields.next()?;
        let found: u32 = fields.next()?.parse().ok()?;
        let printable =
            !name.is_empty() && name.len() <= 64 && name.bytes().all(|b| b.is_ascii_graphic());
        (found == id && printable).then(|| name.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_the_third_field() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\nwww-data:x:33:33::/var/www:/bin/false\nbad name:x:7:7::/:/bin/false\n";
        assert_eq!(find(passwd, 33).as_deref(), Some("www-data"));
        assert_eq!(find(passwd, 0).as_deref(), Some("root"));
        assert_eq!(find(passwd, 7), None, "not printable");
        assert_eq!(find(passwd, 5), None);
        assert_eq!(User(0).to_string(), "root (uid 0)");
        assert_eq!(User(4_000_000_000).to_string(), "uid 4000000000");
    }
}
