// GEMM operand loads of version 3 for f16 storage when K % 8 == 0: X and W bound as
// vec4<u32>, eight packed halves per load. On CPU adapters a load costs about the same
// whatever its width, so this halves the load cost of f16 against vec4<f16>.
@group(0) @binding(1) var<storage, read> xs: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read> ws: array<vec4<u32>>;

struct Op { a: vec4<f32>, b: vec4<f32> }

fn unpack8(v: vec4<u32>) -> Op {
  return Op(vec4<f32>(unpack2x16float(v.x), unpack2x16float(v.y)),
            vec4<f32>(unpack2x16float(v.z), unpack2x16float(v.w)));
}
fn steps() -> u32 { return p.K8; }
fn row_base(row: u32) -> u32 { return row * p.K8; }
fn step_x(base: u32, s: u32) -> Op { return unpack8(xs[base + s]); }
fn step_w(base: u32, s: u32) -> Op { return unpack8(ws[base + s]); }
fn step_dot(a: Op, b: Op) -> f32 { return dot(a.a, b.a) + dot(a.b, b.b); }
