//! The console's seam to heists (`crate::heist`): finding them beside the inventory (for the
//! picker and its plan preview) and saving a command as a heist, on blocking tasks off the UI
//! path. Heists themselves run in the daemon (see `effect.rs`).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::heist::def::HeistDef;
use crate::heist::locate;
use crate::heist::save::{self, SaveRequest};

/// A value shared by reference; equal only to itself (Actions and Effects compare, heist
/// definitions hold regexes that do not).
pub struct Shared<T>(pub Arc<T>);

impl<T> Shared<T> {
    pub fn new(v: T) -> Shared<T> {
        Shared(Arc::new(v))
    }
}

impl<T> Clone for Shared<T> {
    fn clone(&self) -> Self {
        Shared(self.0.clone())
    }
}

impl<T> PartialEq for Shared<T> {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl<T> fmt::Debug for Shared<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Shared<{}>", std::any::type_name::<T>())
    }
}

impl<T> std::ops::Deref for Shared<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// The heists found beside the inventory in use.
#[derive(Debug, Clone, Default)]
pub struct HeistList {
    pub files: Vec<PathBuf>,
    /// Where they were looked for (for the "none found" message).
    pub looked: Vec<PathBuf>,
    pub heists: Vec<HeistDef>,
    /// Files that do not check out, as `file:line:col` messages.
    pub errors: Vec<String>,
}

/// Read the heist files beside `hosts_file` (blocking).
pub fn list(hosts_file: &Path) -> HeistList {
    let (files, looked) = locate::heist_files(None, Some(hosts_file));
    let (heists, errors) = locate::load_all(&files);
    HeistList {
        files,
        looked,
        heists,
        errors: errors.iter().map(|d| d.to_string()).collect(),
    }
}

/// Save a command as a heist (blocking): refused when any heist file already has the name.
/// Returns the file written.
pub fn save_heist(hosts_file: &Path, req: &SaveRequest) -> Result<PathBuf, String> {
    save::check_name(&req.name)?;
    let found = list(hosts_file);
    if let Some(h) = found.heists.iter().find(|h| h.name == req.name) {
        return Err(format!(
            "a heist named `{}` already exists ({}); pick another name",
            req.name, h.loc
        ));
    }
    let target = save::target_file(&found.files, Some(hosts_file));
    save::save(&target, req)?;
    Ok(target)
}
