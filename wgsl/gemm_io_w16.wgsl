// GEMM operand loads for f32 activations and f16 weights (K % 4 == 0): X bound as vec4 rows,
// W as vec2<u32>, four packed halves per load widened with unpack2x16float (core WGSL: no
// shader-f16 needed). Weights in half the bytes; the products and sums stay in f32.
@group(0) @binding(1) var<storage, read> xs: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> ws: array<vec2<u32>>;

fn unpack4(v: vec2<u32>) -> vec4<f32> {
  return vec4<f32>(unpack2x16float(v.x), unpack2x16float(v.y));
}
fn load_x(row: u32, k4: u32) -> vec4<f32> { return xs[row * p.K4 + k4]; }
fn load_w(col: u32, k4: u32) -> vec4<f32> { return unpack4(ws[col * p.K4 + k4]); }

// The K step of version 3: one vec4 of x against four halves of w.
alias Op = vec4<f32>;
fn steps() -> u32 { return p.K4; }
fn row_base(row: u32) -> u32 { return row * p.K4; }
fn step_x(base: u32, s: u32) -> Op { return xs[base + s]; }
fn step_w(base: u32, s: u32) -> Op { return unpack4(ws[base + s]); }
fn step_dot(a: Op, b: Op) -> f32 { return dot(a, b); }
