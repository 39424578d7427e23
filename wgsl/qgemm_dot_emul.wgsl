// The int8 dot product of the integer GEMMs without packed_4x8_integer_dot_product:
// unpack the signed bytes (extractBits sign-extends an i32) and multiply-add.
fn unpack_i8(v: u32) -> vec4<i32> {
  let s = bitcast<i32>(v);
  return vec4<i32>(extractBits(s, 0u, 8u), extractBits(s, 8u, 8u), extractBits(s, 16u, 8u),
                   extractBits(s, 24u, 8u));
}
fn dot4i8(a: u32, b: u32) -> i32 { return dot(unpack_i8(a), unpack_i8(b)); }
