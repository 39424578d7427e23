// Operand loads of the weight-only quantized GEMM (A16) for f16 activations, K % 4 == 0:
// X as four packed halves a load (as gemm_io_f16x4.wgsl), W decoded from its codes.
@group(0) @binding(1) var<storage, read> xs: array<vec2<u32>>;
@group(0) @binding(2) var<storage, read> codes: array<u32>;
@group(0) @binding(7) var<storage, read> wq: array<u32>;

fn load_x(row: u32, k4: u32) -> vec4<f32> {
  let v = xs[row * p.K4 + k4];
  return vec4<f32>(unpack2x16float(v.x), unpack2x16float(v.y));
}
fn load_w(col: u32, k4: u32) -> vec4<f32> { return wdec4(col, k4); }
