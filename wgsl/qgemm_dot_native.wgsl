// The int8 dot product of the integer GEMMs: four signed bytes of a and b, summed
// (WGSL's packed_4x8_integer_dot_product).
fn dot4i8(a: u32, b: u32) -> i32 { return dot4I8Packed(a, b); }
