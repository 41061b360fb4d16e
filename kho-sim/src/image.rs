//! Machine images (placeholder).
