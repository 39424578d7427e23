// Operand loads and output stores of the tiled attention kernels, element by element (any
// layout). `at` is an element index; which: 0 q, 1 k, 2 v.
alias IOT = DT;

fn ld4(at: u32, which: u32) -> vec4<f32> {
  if (which == 0u) {
    return vec4<f32>(f32(q[at]), f32(q[at + 1u]), f32(q[at + 2u]), f32(q[at + 3u]));
  }
  if (which == 1u) {
    return vec4<f32>(f32(k[at]), f32(k[at + 1u]), f32(k[at + 2u]), f32(k[at + 3u]));
  }
  return vec4<f32>(f32(v[at]), f32(v[at + 1u]), f32(v[at + 2u]), f32(v[at + 3u]));
}

fn st4(at: u32, y: vec4<f32>) {
  out[at] = DT(y.x);
  out[at + 1u] = DT(y.y);
  out[at + 2u] = DT(y.z);
  out[at + 3u] = DT(y.w);
}
