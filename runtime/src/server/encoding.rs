//! Compressed request bodies (`Content-Encoding: gzip` or `deflate`), which `tritonclient`
//! sends with `request_compression_algorithm`. The decompressed size is held to the same limit
//! as a plain body (`--max-body-bytes`): output is read through `Read::take(limit + 1)`, so a
//! small body that inflates to gigabytes (a "gzip bomb") costs at most the limit in memory and
//! the time to inflate that much, and is answered 413.

use std::io::Read;

use axum::body::Bytes;
use axum::http::{header, HeaderMap};
use flate2::read::{MultiGzDecoder, ZlibDecoder};

use super::error::ApiError;

/// A request body's content coding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    /// No `Content-Encoding`, or `identity`.
    Identity,
    /// `gzip` (RFC 1952; concatenated members are one body, as gunzip reads them).
    Gzip,
    /// `deflate`: zlib format (RFC 1950), as HTTP defines it and as tritonclient's
    /// `zlib.compress` writes it.
    Deflate,
}

impl Coding {
    /// The coding `headers` declare; one coding at most (a list would mean decoding in turn,
    /// which no inference client does).
    pub fn of(headers: &HeaderMap) -> Result<Coding, ApiError> {
        let Some(v) = headers.get(header::CONTENT_ENCODING) else { return Ok(Coding::Identity) };
        let v = v.to_str().unwrap_or("").trim();
        match v.to_ascii_lowercase().as_str() {
            "" | "identity" => Ok(Coding::Identity),
            "gzip" | "x-gzip" => Ok(Coding::Gzip),
            "deflate" => Ok(Coding::Deflate),
            _ => Err(ApiError::UnsupportedEncoding(format!(
                "Content-Encoding {v:?} is not supported; send gzip, deflate or an uncompressed body"
            ))),
        }
    }
}

/// `body` decoded, at most `limit` bytes of it (413 beyond; 400 when it is not valid data of
/// its coding).
pub fn decode(coding: Coding, body: &[u8], limit: usize) -> Result<Bytes, ApiError> {
    let reader: Box<dyn Read + '_> = match coding {
        Coding::Identity => return Ok(Bytes::copy_from_slice(body)),
        Coding::Gzip => Box::new(MultiGzDecoder::new(body)),
        Coding::Deflate => Box::new(ZlibDecoder::new(body)),
    };
    // Sized for a typical ratio, never beyond the limit: growth past it is what `take` stops.
    let mut out = Vec::with_capacity(body.len().saturating_mul(4).min(limit.saturating_add(1)));
    reader
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| ApiError::BadRequest(format!("the {coding:?} body does not decode: {e}")))?;
    if out.len() > limit {
        return Err(ApiError::TooLarge(format!(
            "the {coding:?} body decompresses to more than the limit of {limit} bytes"
        )));
    }
    Ok(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use axum::http::HeaderValue;
    use flate2::write::{GzEncoder, ZlibEncoder};
    use flate2::Compression;

    use super::*;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn round_trips_and_caps_the_decoded_size() {
        let data = b"{\"inputs\": []}".repeat(100);
        assert_eq!(decode(Coding::Gzip, &gzip(&data), data.len()).unwrap(), data[..]);
        let mut z = ZlibEncoder::new(Vec::new(), Compression::default());
        z.write_all(&data).unwrap();
        assert_eq!(decode(Coding::Deflate, &z.finish().unwrap(), 1 << 20).unwrap(), data[..]);
        // One byte over the limit is refused; 1 GiB of zeros is ~1 MiB of gzip and is refused
        // after reading limit + 1 bytes, not 1 GiB.
        assert!(matches!(decode(Coding::Gzip, &gzip(&data), data.len() - 1), Err(ApiError::TooLarge(_))));
        let bomb = gzip(&vec![0u8; 64 << 20]);
        assert!(bomb.len() < 1 << 20);
        assert!(matches!(decode(Coding::Gzip, &bomb, 1 << 20), Err(ApiError::TooLarge(_))));
        assert!(matches!(decode(Coding::Gzip, b"not gzip", 1 << 20), Err(ApiError::BadRequest(_))));
    }

    #[test]
    fn reads_the_header() {
        let mut h = HeaderMap::new();
        assert_eq!(Coding::of(&h).unwrap(), Coding::Identity);
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("GZIP"));
        assert_eq!(Coding::of(&h).unwrap(), Coding::Gzip);
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("br"));
        assert!(matches!(Coding::of(&h), Err(ApiError::UnsupportedEncoding(_))));
    }
}
