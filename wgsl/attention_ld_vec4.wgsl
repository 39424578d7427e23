// Operand loads and output stores of the tiled attention kernels as whole vec4s, for
// layouts whose offsets and strides are multiples of 4 elements (the host checks). `at` is
// an element index (a multiple of 4); which: 0 q, 1 k, 2 v.
alias IOT = DT4;

fn ld4(at: u32, which: u32) -> vec4<f32> {
  if (which == 0u) { return vec4<f32>(q[at / 4u]); }
  if (which == 1u) { return vec4<f32>(k[at / 4u]); }
  return vec4<f32>(v[at / 4u]);
}

fn st4(at: u32, y: vec4<f32>) {
  out[at / 4u] = DT4(y);
}
