//! longlink-nal: the blocking embedded-nal driver (being written).
#![no_std]
#![forbid(unsafe_code)]
