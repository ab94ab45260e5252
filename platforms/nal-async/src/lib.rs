//! longlink-nal-async: the embedded-nal-async driver (being written).
#![no_std]
#![forbid(unsafe_code)]
