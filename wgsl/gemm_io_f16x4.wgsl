// GEMM operand loads for f16 storage when K % 4 == 0: X and W bound as vec2<u32>, four packed
// halves per load, widened with unpack2x16float (on CPU adapters much cheaper than loading
// vec4<f16> and converting it; the same work on GPUs).
@group(0) @binding(1) var<storage, read> xs: array<vec2<u32>>;
@group(0) @binding(2) var<storage, read> ws: array<vec2<u32>>;

fn unpack4(v: vec2<u32>) -> vec4<f32> {
  return vec4<f32>(unpack2x16float(v.x), unpack2x16float(v.y));
}
fn load_x(row: u32, k4: u32) -> vec4<f32> { return unpack4(xs[row * p.K4 + k4]); }
fn load_w(col: u32, k4: u32) -> vec4<f32> { return unpack4(ws[col * p.K4 + k4]); }

// The K step of version 3: four halves.
alias Op = vec4<f32>;
fn steps() -> u32 { return p.K4; }
fn row_base(row: u32) -> u32 { return row * p.K4; }
fn step_x(base: u32, s: u32) -> Op { return unpack4(xs[base + s]); }
fn step_w(base: u32, s: u32) -> Op { return unpack4(ws[base + s]); }
fn step_dot(a: Op, b: Op) -> f32 { return dot(a, b); }
