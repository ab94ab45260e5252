//! longlink-std: the desktop tool (being written).
#![forbid(unsafe_code)]
