// Elementwise ops on flat arrays. OP selects the op (see runtime/ops/elementwise.ts);
// the grid may be 2-D for large arrays: index = x + y * (groups_x * WG).
override OP: u32 = 0u;
override WG: u32 = 256u;

struct Params { n: u32, alpha: f32, beta: f32, width: u32, stride: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<DT>;
@group(0) @binding(2) var<storage, read> y: array<DT>;
@group(0) @binding(3) var<storage, read_write> out: array<DT>;

fn gelu_tanh(v: f32) -> f32 {
  let c = 0.7978845608028654; // sqrt(2/pi)
  let u = c * (v + 0.044715 * v * v * v);
  return 0.5 * v * (1.0 + tanh(clamp(u, -15.0, 15.0)));
}

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) ng: vec3<u32>) {
  let i = gid.x + gid.y * ng.x * WG;
  if (i >= p.n) { return; }
  let a = f32(x[i]);
  var r: f32;
  switch OP {
    case 0u: { r = p.alpha * a + p.beta * f32(y[i]); }        // axpby
    case 1u: { r = a * f32(y[i]); }                            // mul
    case 2u: { r = a * p.alpha + p.beta; }                     // affine
    case 3u: { r = a / (1.0 + exp(-a)); }                      // silu
    case 4u: { r = gelu_tanh(a); }                             // gelu (tanh)
    case 5u: { r = a + f32(y[i % p.width]); }                  // add a row vector (broadcast)
    case 7u: { r = clamp(a, p.alpha, p.beta); }                // clamp to [alpha, beta]
    case 8u: {                                                 // CFG: u + alpha·(c − u) over row slices
      let src = (i / p.width) * p.stride + i % p.width;
      let u = f32(x[src]);
      let c = f32(y[src + (p.n / p.width) * p.stride]);        // the second half of the batch
      r = u + p.alpha * (c - u);
    }
    case 10u: { r = a - f32(y[(i / (p.width * p.stride)) * p.width + i % p.width]); } // x − y[group]
    case 11u: {                                                // the same of [u; c − u] (CFG pair)
      var d = a;
      if (i >= p.n / 2u) { d -= f32(x[i - p.n / 2u]); }
      r = d - f32(y[(i / (p.width * p.stride)) * p.width + i % p.width]);
    }
    case 9u: { r = f32(x[(i / p.width) * p.stride + i % p.width]); } // gather row slices
    default: { r = a; }                                        // copy / cast
  }
  out[i] = DT(r);
}
