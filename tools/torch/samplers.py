"""Samplers and classifier-free guidance, written from the equations.

Both follow diffusers' scheduler defaults for a model trained on the discrete DDPM schedule:
1000 steps, betas linear in [1e-4, 0.02] (f32), alpha_bar = cumprod(1 - beta) (f32), epsilon
prediction.

DPM-Solver++ 2M (DPMSolverMultistepScheduler defaults: solver_order 2, dpmsolver++, midpoint,
lower_order_final, timestep_spacing "linspace", final_sigmas_type "zero"):
  timesteps  t_i = round(linspace(0, 999, n + 1))[::-1][:n]      (int, e.g. 999 749 500 250)
  sigma_i    = sqrt((1 - abar[t_i]) / abar[t_i]) (f32), sigma_n = 0
  alpha_i    = 1 / sqrt(sigma_i^2 + 1), s_i = sigma_i * alpha_i, lambda_i = log(alpha_i / s_i)
  x0_i       = (x - s_i * eps_i) / alpha_i
  h          = lambda_{i+1} - lambda_i
  1st order  x <- (s_{i+1} / s_i) x - alpha_{i+1} (e^{-h} - 1) x0_i
             at i = 0 and at the last step, where sigma = 0 makes it x <- x0_{n-1}
  2nd order  r = (lambda_i - lambda_{i-1}) / h, D1 = (x0_i - x0_{i-1}) / r
             x <- (s_{i+1} / s_i) x - alpha_{i+1} (e^{-h} - 1) (x0_i + D1 / 2)   (0 < i < n-1)
  With solver_order 2 the "lower_order_second" rule changes nothing (it only caps order 3).

DDIM (DDIMScheduler defaults: eta 0, clip_sample True (x0 clamped to [-1, 1]),
set_alpha_to_one True, timestep_spacing "leading", steps_offset 0):
  timesteps  t_i = (n - 1 - i) * (1000 // n)                     (e.g. 750 500 250 0)
  x0         = (x - sqrt(1 - abar_t) eps) / sqrt(abar_t), clamped to [-1, 1]
  x         <- sqrt(abar_prev) x0 + sqrt(1 - abar_prev) eps,  prev = t - 1000 // n
             (abar_prev = 1 when prev < 0); eps is the model's, not re-derived from the clamp.

CFG as the PixArt pipeline does it: the model runs on the batch [uncond..., cond...]
(negative_prompt_embeds first), eps = eps_u + g (eps_c - eps_u); with learned sigma
(out_channels == 2 * in_channels) only the first in_channels of the guided output are used.
"""

import numpy as np
import torch

NUM_TRAIN_TIMESTEPS = 1000


def alphas_cumprod(beta_start=1e-4, beta_end=0.02, n=NUM_TRAIN_TIMESTEPS):
    """alpha_bar[t] in f32, as diffusers computes it (f32 linspace, f32 cumprod)."""
    betas = torch.linspace(beta_start, beta_end, n, dtype=torch.float32)
    return torch.cumprod(1.0 - betas, dim=0)


class DPMSolverPP2M:
    """DPM-Solver++ (2M, midpoint) on the discrete linear-beta schedule."""

    order = 2

    def __init__(self, num_inference_steps, lower_order_final=True):
        n = int(num_inference_steps)
        if n < 1:
            raise ValueError("num_inference_steps must be >= 1")
        abar = alphas_cumprod()
        ts = np.linspace(0, NUM_TRAIN_TIMESTEPS - 1, n + 1).round()[::-1][:-1].copy().astype(np.int64)
        sig_all = ((1 - abar) / abar) ** 0.5  # f32
        sig = sig_all.numpy()[ts]
        self.timesteps = torch.from_numpy(ts)
        self.sigmas = torch.from_numpy(np.concatenate([sig, [0.0]]).astype(np.float32))
        self.lower_order_final = lower_order_final
        self.reset()

    def reset(self):
        self.step_index = 0
        self.prev_x0 = None
        self.prev_lambda = None

    @staticmethod
    def _alpha_sigma(sigma):
        alpha = 1.0 / torch.sqrt(sigma * sigma + 1.0)
        return alpha, sigma * alpha

    def step(self, eps, x):
        """One update from the model's epsilon at timesteps[step_index]; returns the new x."""
        i = self.step_index
        n = len(self.timesteps)
        wd = torch.float64 if x.dtype == torch.float64 else torch.float32  # f64 for reference runs
        a_s, s_s = self._alpha_sigma(self.sigmas[i].to(wd))
        a_t, s_t = self._alpha_sigma(self.sigmas[i + 1].to(wd))
        xf = x.to(wd)
        x0 = (xf - s_s * eps.to(wd)) / a_s
        lam_s = torch.log(a_s) - torch.log(s_s)
        last = i == n - 1
        if float(self.sigmas[i + 1]) == 0.0:
            out = x0  # the sigma = 0 limit of the first-order update
        else:
            lam_t = torch.log(a_t) - torch.log(s_t)
            h = lam_t - lam_s
            first = self.prev_x0 is None or (last and self.lower_order_final)
            if first:
                out = (s_t / s_s) * xf - (a_t * (torch.exp(-h) - 1.0)) * x0
            else:
                r = (lam_s - self.prev_lambda) / h
                d1 = (1.0 / r) * (x0 - self.prev_x0)
                out = (s_t / s_s) * xf - (a_t * (torch.exp(-h) - 1.0)) * x0 - 0.5 * (a_t * (torch.exp(-h) - 1.0)) * d1
        self.prev_x0 = x0
        self.prev_lambda = lam_s
        self.step_index += 1
        return out.to(x.dtype)


class DDIM:
    """Deterministic DDIM (eta 0) with diffusers' default x0 clipping and leading spacing."""

    order = 1

    def __init__(self, num_inference_steps, clip_sample=True, clip_range=1.0):
        n = int(num_inference_steps)
        if not 1 <= n <= NUM_TRAIN_TIMESTEPS:
            raise ValueError("num_inference_steps out of range")
        ratio = NUM_TRAIN_TIMESTEPS // n
        self.ratio = ratio
        self.timesteps = torch.from_numpy((np.arange(0, n) * ratio).round()[::-1].copy().astype(np.int64))
        self.abar = alphas_cumprod()
        self.clip_sample = clip_sample
        self.clip_range = clip_range
        self.reset()

    def reset(self):
        self.step_index = 0

    def step(self, eps, x):
        t = int(self.timesteps[self.step_index])
        prev = t - self.ratio
        wd = torch.float64 if x.dtype == torch.float64 else torch.float32
        a_t = self.abar[t].to(wd)
        a_prev = self.abar[prev].to(wd) if prev >= 0 else torch.tensor(1.0, dtype=wd)
        eps32 = eps.to(wd)
        x0 = (x.to(wd) - (1 - a_t) ** 0.5 * eps32) / a_t**0.5
        if self.clip_sample:
            x0 = x0.clamp(-self.clip_range, self.clip_range)
        out = a_prev**0.5 * x0 + (1 - a_prev) ** 0.5 * eps32
        self.step_index += 1
        return out.to(x.dtype)


def make_sampler(name, steps):
    if name in ("dpm++2m", "dpm", "dpmpp2m"):
        return DPMSolverPP2M(steps)
    if name == "ddim":
        return DDIM(steps)
    raise ValueError(f"unknown sampler {name!r}")


@torch.no_grad()
def sample(model, latents, prompt_embeds, prompt_attention_mask=None, negative_prompt_embeds=None,
           negative_prompt_attention_mask=None, steps=20, guidance_scale=4.5, sampler="dpm++2m",
           added_cond_kwargs=None, return_trajectory=False):
    """The PixArt pipeline's denoising loop on given initial latents [B, C, H, W].

    added_cond_kwargs (resolution [B, 2], aspect_ratio [B, 1]) are given per image and
    duplicated for the CFG batch. Returns the final latents (and the per-step latents).
    """
    sch = make_sampler(sampler, steps)
    cfg = guidance_scale > 1.0
    x = latents
    b = x.shape[0]
    if cfg:
        if negative_prompt_embeds is None:
            raise ValueError("guidance_scale > 1 needs negative_prompt_embeds")
        emb = torch.cat([negative_prompt_embeds, prompt_embeds], dim=0)
        mask = None
        if prompt_attention_mask is not None:
            mask = torch.cat([negative_prompt_attention_mask, prompt_attention_mask], dim=0)
    else:
        emb, mask = prompt_embeds, prompt_attention_mask
    ac = None
    if added_cond_kwargs:
        ac = {k: (torch.cat([v, v], dim=0) if cfg else v) for k, v in added_cond_kwargs.items()}
    in_ch = x.shape[1]
    traj = []
    for t in sch.timesteps:
        xin = torch.cat([x, x], dim=0) if cfg else x
        tt = t.to(x.device).expand(xin.shape[0])
        out = model(xin, emb, tt, added_cond_kwargs=ac, encoder_attention_mask=mask)
        if cfg:
            u, c = out.chunk(2)
            out = u + guidance_scale * (c - u)
        if out.shape[1] == 2 * in_ch:  # learned sigma: keep the epsilon half
            out = out[:, :in_ch]
        x = sch.step(out, x)
        traj.append(x.clone())
    assert x.shape[0] == b
    return (x, sch.timesteps, torch.stack(traj)) if return_trajectory else x
