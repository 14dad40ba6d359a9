//! Model input from what clients send, whatever the protocol: pixels of an accepted datatype
//! checked and normalised with the manifest's mean and std ([`normalise`]), and PNG/JPEG images
//! decoded to those pixels ([`image`]). Every route feeds the model through here, so an image
//! and an OIP tensor of the same pixels get the same answer.

pub mod image;
mod pixels;

pub use self::image::{to_pixels, ImageInputError, MAX_PIXELS};
pub use pixels::{normalise, InputError};
