//! Errors of this crate: one line each, naming the file or field concerned.

use std::path::PathBuf;

/// A request's or a file's image could not become model input.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ImageError {
    /// Zero bytes.
    #[error("empty body; send a PNG or JPEG image")]
    Empty,
    /// Neither a PNG nor a JPEG signature.
    #[error("not a PNG or JPEG image (judged by its first bytes; Content-Type and file names are ignored)")]
    NotAnImage,
    /// The header declares more pixels than allowed.
    #[error("image of {width}×{height} pixels is over the limit of {limit} pixels")]
    TooManyPixels {
        /// Declared width.
        width: u32,
        /// Declared height.
        height: u32,
        /// The limit.
        limit: u64,
    },
    /// The decoder would need more memory than its allocation limit.
    #[error("decoding the {format} image needs too much memory: {reason}")]
    DecoderLimit {
        /// `PNG` or `JPEG`.
        format: &'static str,
        /// What the decoder said.
        reason: String,
    },
    /// A PNG or JPEG signature, but broken data or an unsupported feature.
    #[error("could not decode the {format} image: {reason}")]
    Undecodable {
        /// `PNG` or `JPEG`.
        format: &'static str,
        /// What the decoder said.
        reason: String,
    },
    /// The model's input is neither grayscale nor RGB.
    #[error(
        "the model takes {0}-channel input; images can feed 1- or 3-channel models only (use OIP tensors)"
    )]
    Channels(usize),
}

/// A dataset could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A directory or file is missing or unreadable.
    #[error("{path}: {reason}")]
    Io {
        /// File concerned.
        path: PathBuf,
        /// What the OS said.
        reason: String,
    },
    /// A folder has no class sub-folders.
    #[error(
        "{0}: no class folders (expected one sub-folder of images per class, as torchvision's ImageFolder)"
    )]
    NoClasses(PathBuf),
    /// A class folder holds no PNG or JPEG file.
    #[error("{0}: empty class folder (no .png, .jpg or .jpeg file)")]
    EmptyClass(PathBuf),
    /// An image file of a format dyce does not read.
    #[error("{0}: unsupported image format (dyce reads PNG and JPEG)")]
    Unsupported(PathBuf),
    /// An image file that does not decode.
    #[error("{path}: {source}")]
    Image {
        /// File concerned.
        path: PathBuf,
        /// Why.
        source: ImageError,
    },
    /// The split folders disagree on the classes.
    #[error("{split}: its class folders differ from {reference}'s ({detail})")]
    ClassMismatch {
        /// The folder whose classes differ.
        split: PathBuf,
        /// The folder they were compared with.
        reference: PathBuf,
        /// The first difference.
        detail: String,
    },
    /// Some but not all of the split folders exist.
    #[error("{root}: has {present} but not {missing} (give train/, val/ and test/, or one folder of class folders)")]
    PartialSplits {
        /// The dataset root.
        root: PathBuf,
        /// The split folders found.
        present: String,
        /// The ones missing.
        missing: String,
    },
    /// Split fractions that do not describe a split.
    #[error("split fractions {0}")]
    Fractions(String),
    /// A file is not in the format it should be (IDX, labels file).
    #[error("{path}: {reason}")]
    Format {
        /// File concerned.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}
