// TLQ levels rebuilt from per-row parameters (qgemm_dec.wgsl MODE 5 and 6), with the
// integer arithmetic of plugins/quantizers/tlq.ts (tlqExp2, tlqLevel) and
// runtime/reference/qgemm.ts (int8Level), so the tables match the host's bit for bit.
// wq[2·row] = pack2x16float(Δ⁺, Δ⁻), wq[2·row + 1] = z⁺ | z⁻ << 16 (i16 each), wq[2·N] = η.
// Level of code c: ±max(2^((k + z)·Δ) − η, 0), k = c mod 2^(b−1), − for c ≥ 2^(b−1); 0 where
// Δ = 0 (a plane without weights). The including kernel declares `p` and `wq`.

// round(2^31·2^(j/16)), j < 16 (TLQ_EXP2_TABLE).
const TLQ_T = array<u32, 16>(
  2147483648u, 2242560872u, 2341847524u, 2445529972u, 2553802834u, 2666869345u, 2784941738u,
  2908241642u, 3037000500u, 3171459999u, 3311872529u, 3458501653u, 3611622603u, 3771522796u,
  3938502376u, 4112874773u);

// floor(a·b / 2^32), exactly.
fn tlq_mulhi(a: u32, b: u32) -> u32 {
  let al = a & 0xffffu;
  let ah = a >> 16u;
  let bl = b & 0xffffu;
  let bh = b >> 16u;
  let lh = al * bh;
  let hl = ah * bl;
  let mid = ((al * bl) >> 16u) + (lh & 0xffffu) + (hl & 0xffffu);
  return ah * bh + (lh >> 16u) + (hl >> 16u) + (mid >> 16u);
}

// 2^(kz·Δ) for Δ given as f16 bits h (finite, ≠ ±0): x = kz·m·2^(e−25) exact in integers;
// 2^frac(x) = table[top 4 bits]·e^u, u < ln2/16, by a degree-5 Taylor polynomial in Q32.
fn tlq_exp2(h: u32, kz: i32) -> f32 {
  let e = (h >> 10u) & 31u;
  let m = select(h & 1023u, 1024u + (h & 1023u), e > 0u);
  var n = kz * i32(m);
  if ((h & 0x8000u) != 0u) { n = -n; }
  let sh = 25 - i32(max(e, 1u));
  var ip: i32;
  var fq = 0u;
  if (sh <= 0) {
    ip = clamp(n, -256, 256) << u32(-sh);
  } else {
    ip = n >> u32(sh);
    fq = u32(n & ((1 << u32(sh)) - 1)) << (32u - u32(sh));
  }
  if (ip < -126) { return 0.0; }
  if (ip > 127) { return bitcast<f32>(0x7f800000u); }
  let u = tlq_mulhi(fq & 0x0fffffffu, 2977044472u); // frac below 1/16 times ln 2
  let a = 178956971u + tlq_mulhi(u, 35791394u);      // 1/24 + u/120
  let b = 715827883u + tlq_mulhi(u, a);              // 1/6 + u·a
  let c = 2147483648u + tlq_mulhi(u, b);             // 1/2 + u·b
  let poly = u + tlq_mulhi(u, tlq_mulhi(u, c));      // e^u − 1
  let t0 = TLQ_T[fq >> 28u];
  let t = t0 + min(tlq_mulhi(t0, poly), 0xffffffffu - t0); // 2^frac(x), Q31
  var mant = t >> 8u;
  let rem = t & 0xffu;
  if (rem > 128u || (rem == 128u && (mant & 1u) == 1u)) { mant += 1u; }
  if (mant == 0x1000000u) {
    mant = 0x800000u;
    ip += 1;
    if (ip > 127) { return bitcast<f32>(0x7f800000u); }
  }
  return bitcast<f32>((u32(ip + 127) << 23u) | (mant & 0x7fffffu));
}

fn tlq_eta() -> f32 { return bitcast<f32>(wq[2u * p.N]); }

// Δ (f16 bits) and z of the plane of code c in row `row`; .z = 1 for the negative plane.
fn tlq_plane(row: u32, c: u32) -> vec3<i32> {
  let neg = c >= (1u << (BITS - 1u));
  let hw = wq[2u * row];
  let zw = wq[2u * row + 1u];
  let h = select(hw & 0xffffu, hw >> 16u, neg);
  let z = select(i32(zw << 16u) >> 16u, i32(zw) >> 16u, neg);
  return vec3<i32>(i32(h), z, select(0, 1, neg));
}

// Level of code c in row `row` (as tlqLut).
fn tlq_level(row: u32, c: u32, eta: f32) -> f32 {
  let pl = tlq_plane(row, c);
  let h = u32(pl.x);
  var v = 0.0;
  if ((h & 0x7fffu) != 0u) {
    v = max(tlq_exp2(h, i32(c & ((1u << (BITS - 1u)) - 1u)) + pl.y) - eta, 0.0);
  }
  return select(v, -v, pl.z == 1);
}

// round(127·l/m) exactly (ties away from 0), l's sign; |l| ≤ m (int8Level).
fn tlq_q8(l: f32, m: f32) -> i32 {
  let lb = bitcast<u32>(l) & 0x7fffffffu;
  let mb = bitcast<u32>(m) & 0x7fffffffu;
  if (lb < 0x00800000u || mb < 0x00800000u) { return 0; }
  let t = (mb >> 23u) - (lb >> 23u);
  if (t > 8u) { return 0; }
  let num = 127u * ((lb & 0x7fffffu) | 0x800000u);
  let den = ((mb & 0x7fffffu) | 0x800000u) << t;
  var q = num / den;
  let r = num - q * den;
  if (r >= den - r) { q += 1u; }
  return select(i32(q), -i32(q), l < 0.0);
}
