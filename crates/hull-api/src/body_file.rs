//! Request bodies too big to hold in memory (image archives, build contexts): written to
//! a temporary file under the root as they arrive.

use std::io::Write as _;
use std::path::Path;

use http_body_util::BodyExt as _;

use crate::error::ApiError;
use crate::http::Req;

fn tmp_err(e: std::io::Error) -> ApiError {
    ApiError::internal(format!("cannot write a temporary file: {e}"))
}

/// The body in a temporary file under `root` (deleted when dropped).
pub(crate) async fn to_temp_file(
    req: &mut Req,
    root: &Path,
) -> Result<tempfile::NamedTempFile, ApiError> {
    let mut f = tempfile::NamedTempFile::new_in(root).map_err(tmp_err)?;
    let Some(mut body) = req.body.take() else {
        return Ok(f);
    };
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|e| ApiError::bad(format!("cannot read the request body: {e}")))?;
        if let Ok(data) = frame.into_data() {
            // Small writes to a local file: not worth a trip to the blocking pool.
            f.write_all(&data).map_err(tmp_err)?;
        }
    }
    f.flush().map_err(tmp_err)?;
    Ok(f)
}

/// A build context tar (maybe compressed) unpacked into a temporary directory; the tar
/// crate refuses entries that would land outside it (`..`, absolute paths).
pub(crate) fn unpack_context(tar: &Path, root: &Path) -> Result<tempfile::TempDir, ApiError> {
    let dir = tempfile::Builder::new()
        .prefix("build-ctx-")
        .tempdir_in(root)
        .map_err(tmp_err)?;
    let f = std::fs::File::open(tar).map_err(tmp_err)?;
    let r = hull_image::create::decompressed(f)
        .map_err(|e| ApiError::bad(format!("the build context is not a tar: {e}")))?;
    let mut a = tar::Archive::new(r);
    a.set_preserve_permissions(true);
    a.unpack(dir.path())
        .map_err(|e| ApiError::bad(format!("the build context is not a usable tar: {e}")))?;
    Ok(dir)
}
