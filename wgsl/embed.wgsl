// Embeddings, one thread per output element:
//   timestep — diffusers' get_timestep_embedding, emulating torch's f32 evaluation order
//              (exponent = −ln(P)·k / (half − shift), freq = exp(exponent), arg = t·freq,
//              scale·arg, then sin/cos), so the result matches torch within a few ulps;
//   pos2d    — get_2d_sincos_pos_embed: columns [0, E/2) encode the w coordinate and
//              [E/2, E) the h coordinate, each as [sin | cos] of pos·10000^(−k/(E/4));
//   gather   — rows of a table [V, C] picked by u32 ids (embedding lookup; ids ≥ V give
//              zeros).
// exp, sin and cos are evaluated here with explicit range reduction and polynomials
// (cephes-style, ~1 ulp): WGSL only bounds sin/cos to 2^-11 absolute on [−π, π], and
// timestep arguments reach ~1000. Divisions are corrected to round like torch's.
override WG: u32 = 256u;
override OP: u32 = 0u; // 0 timestep, 1 pos2d, 2 gather

struct Params {
  n: u32, width: u32, half: u32, flip: u32,      // n outputs; width = row length
  neg_log_p: f32, denom: f32, scale: f32, rows: u32,
  grid_w: u32, h_step: f32, w_step: f32, interp: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> inp: array<u32>; // timesteps (f32 bits) or ids
@group(0) @binding(2) var<storage, read> table: array<DT>;
@group(0) @binding(3) var<storage, read_write> out: array<DT>;

// a / b rounded to nearest, as an IEEE division (WGSL allows 2.5 ulp).
fn div_rn(a: f32, b: f32) -> f32 {
  let q = a / b;
  return q + fma(-q, b, a) / b;
}

// e^x for |x| ≲ 80: x = n·ln2 + r, |r| ≤ ln2/2, degree-7 Taylor polynomial, scaled by 2^n.
fn exp_acc(x: f32) -> f32 {
  let n = round(x * 1.44269504088896341);
  let r = (x - n * 0.693145751953125) - n * 1.42860682030941723212e-6;
  var e = 1.0 / 5040.0;
  e = e * r + 1.0 / 720.0;
  e = e * r + 1.0 / 120.0;
  e = e * r + 1.0 / 24.0;
  e = e * r + 1.0 / 6.0;
  e = e * r + 0.5;
  e = e * r + 1.0;
  e = e * r + 1.0;
  return ldexp(e, i32(n));
}

// (sin a, cos a) for |a| ≲ 1e4: a = k·π/2 + r with a three-part π/2 (k·part exact), then
// minimax polynomials on |r| ≤ π/4 and the quadrant k mod 4.
fn sincos_acc(a: f32) -> vec2<f32> {
  let k = round(a * 0.636619772367581343);
  let r = ((a - k * 1.5703125) - k * 4.837512969970703125e-4) - k * 7.54978995489188216e-8;
  let z = r * r;
  let s = r + r * z * ((-1.9515295891e-4 * z + 8.3321608736e-3) * z - 1.6666654611e-1);
  let c = 1.0 - 0.5 * z + z * z * ((2.443315711809948e-5 * z - 1.388731625493765e-3) * z + 4.166664568298827e-2);
  let q = i32(k) & 3;
  if (q == 0) { return vec2<f32>(s, c); }
  if (q == 1) { return vec2<f32>(c, -s); }
  if (q == 2) { return vec2<f32>(-s, -c); }
  return vec2<f32>(-c, s);
}

// Column j of a [sin | cos] embedding of `half` frequencies; `flip` puts cos first.
fn sin_cos_col(j: u32, half: u32, flip: bool, arg_of: f32) -> f32 {
  let sc = sincos_acc(arg_of);
  let first = j < half;
  return select(sc.y, sc.x, first != flip);
}

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) ng: vec3<u32>) {
  let i = gid.x + gid.y * ng.x * WG;
  if (i >= p.n) { return; }
  let row = i / p.width;
  let j = i % p.width;
  switch OP {
    case 0u: {
      if (j >= 2u * p.half) { out[i] = DT(0.0); return; } // odd dims: zero pad
      let k = j % p.half;
      let freq = exp_acc(div_rn(p.neg_log_p * f32(k), p.denom));
      let arg = p.scale * (bitcast<f32>(inp[row]) * freq);
      out[i] = DT(sin_cos_col(j, p.half, p.flip != 0u, arg));
    }
    case 1u: {
      // Token row = h·W + w; half = E/2 columns per coordinate, E/4 frequencies each.
      let quarter = p.half / 2u;
      let jj = j % p.half;
      let k = jj % quarter;
      var pos: f32;
      if (j < p.half) {
        pos = div_rn(div_rn(f32(row % p.grid_w), p.w_step), p.interp);
      } else {
        pos = div_rn(div_rn(f32(row / p.grid_w), p.h_step), p.interp);
      }
      let omega = exp_acc(p.neg_log_p * f32(k));
      out[i] = DT(sin_cos_col(jj, quarter, false, pos * omega));
    }
    default: {
      let id = inp[row];
      out[i] = select(DT(0.0), table[min(id, p.rows - 1u) * p.width + j], id < p.rows);
    }
  }
}
