//! Files the gateway creates hold secrets and users' data: directories are created `0700` and
//! files `0600` (on Unix), whatever the process umask, and `DATA_DIR` and `KEY_DIR` themselves
//! are tightened to `0700` at start-up if group or others could enter them.

use std::fs::OpenOptions;
use std::io;
use std::path::Path;

/// Creates `path` (and missing parents) readable by the gateway's user only.
pub fn private_dir(path: &Path) -> io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(path)
}

/// `DATA_DIR` and `KEY_DIR`: created `0700`, or tightened to it when it exists with group or
/// other access.
pub fn secure_dir(path: &Path) -> io::Result<()> {
    private_dir(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)?.permissions().mode();
        if mode & 0o077 != 0 {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))?;
            tracing::info!(path = %path.display(), was = format!("{:o}", mode & 0o777), "directory tightened to 0700");
        }
    }
    Ok(())
}

/// Options that create a file readable by the gateway's user only.
pub fn private_file() -> OpenOptions {
    let mut options = OpenOptions::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
}
