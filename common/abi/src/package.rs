//! The Debian package's layout (`cargo xtask deb` writes it, `bulkhead install` reads it):
//! where the package puts the tool and the images, relative to the root it is installed in.

/// The package's name.
pub const NAME: &str = "bulkhead";
/// The Linux-side tool.
pub const TOOL: &str = "usr/bin/bulkhead";
/// The directory of the images: `bulkhead install` takes them from here by default.
pub const IMAGES_DIR: &str = "usr/lib/bulkhead";
/// The hypervisor's image in [`IMAGES_DIR`].
pub const HYPERVISOR_IMAGE: &str = "hypervisor.elf";
/// The RT kernel's image in [`IMAGES_DIR`].
pub const RT_IMAGE: &str = "rt.elf";
/// The package's documentation directory.
pub const DOC_DIR: &str = "usr/share/doc/bulkhead";
