/**
 * The help text of `deno task quantize` (runtime/cli/quantize.ts).
 *
 * @module
 */
import { DEFAULT_KEEP_FP, FLUX_KEEP_FP } from "../quant/plan.ts";

/** Usage text of quantize. */
export const QUANTIZE_USAGE =
  `deno task quantize --quantizer Q --wbits B --abits B --out FILE [options]
  --model PATH            model folder (diffusers layout); default models/emoji-s
  --quantizer Q           uniform, tlq, or kmeans (each row's optimal 2^B levels: exact 1-D
                          k-means, the least weight error of any per-row grid)
  --wbits B               weight bits: 3, 4 or 8 (tlq and kmeans: 3 or 4)
  --abits B               activation bits: 4, 6, 8 (per-token int8 GEMMs) or 16 (weight-only)
  --rotation R            none (default), hadamard, outlier, adaptive
  --tau F                 adaptive: the ARS threshold on the input RMS J (J < τ → hadamard,
                          else outlier; default 1)
  --ars-select S          adaptive: how a layer's branch is chosen: rms (default: J against τ),
                          error (of hadamard, outlier and none, the least output error of
                          the layer, weights rounded plainly and activations quantized, on
                          its calibration rows; each layer is quantized three times over),
                          or act-error (the same by the activation quantizer's error alone,
                          weights exact: for --gptq and --low-rank plans, whose weight error
                          plain rounding overstates)
  --rotation-override L   adaptive: comma-separated PATTERN=BRANCH (* wildcard; BRANCH hadamard,
                          outlier or none) forcing a layer's branch, e.g.
                          "transformer_blocks.*.ff.net.2=outlier"
  --alpha F               rotations: SmoothQuant α in [0, 1] (default 0.5)
  --no-smooth             rotations: rotate without smoothing first
  --rotation-seed N       rotations: seed of the random signs and permutations (default 0;
                          another seed is another, equally valid, plan)
  --greedy-objective O    outlier, adaptive: what the greedy rotation steps minimise: rowmax
                          (default: the calibration rows' mean squared max |v|), range
                          (max − min of the whole calibration matrix, its proxy row of
                          per-channel extremes included: METHODS.md's) or absmax (max |v|)
  --attention A           dense (default) or paro
  --density F             paro: kept block density (0.5, 0.3, 0.2)
  --attn-bits B           paro: 8 or 4
  --paro-alpha F          paro: weight α in [0, 1] of the sparse share in each head's order
                          score, 1 − α that of the incoherence (METHODS.md §3; default 0.5)
  --group-size G          uniform, tlq, kmeans: group size along K (0 = per row, default; 64, 128;
                          tlq: a log grid and LUT a group, G dividing each layer's K; pair
                          it with --tlq-fit mse: percentile grids gain nothing from groups);
                          with integer activations a multiple of 16 dividing each layer's K (and
                          nesting with --act-group's: one divides the other)
  --symmetric             uniform: symmetric (default for W8 with integer activations)
  --tlq-fit F             tlq: how each row's log grid is chosen: percentile (default: METHODS.md,
                          lowest level at the row's smallest |w|, top at the p-th percentile)
                          or mse (fitted to least squared error, weights on their nearest
                          level; same artifact format; lower weight error, though not always
                          closer images; slower to quantize)
  --tlq-assign A          tlq: how a weight picks its level on METHODS.md's grid: log (default:
                          rounding in the log domain) or nearest (the nearest level; lower weight
                          error); --tlq-fit mse always takes the nearest
  --abits-override LIST   comma-separated PATTERN=BITS (* wildcard; BITS 4, 6, 8 or 16) giving the
                          matching layers other activation bits than --abits (first match wins),
                          e.g. "transformer_blocks.*.attn1.to_*=16": a mixed-precision plan
  --center C              mean or midrange: centre each sample's input channels by their mean or
                          midrange over its tokens before the per-token activation quantizer,
                          and add the centre's product with the weight back in float (one
                          small weight-only GEMM a layer); an offset all tokens share, such as
                          adaLN's shift, then no longer sets every token's scale
  --act-group G           a multiple of 16: quantize each token's runs of G input channels on
                          their own scale instead of one a token (finer, dearer: the integer
                          GEMM rescales its sums every G channels)
  --act-asym              with --act-group: each group's levels from its min to its max (a zero
                          point each, added back as z·Σŵ in the integer GEMM) instead of ±max
  --cfg-delta             under classifier-free guidance, quantize each layer's [uncond;
                          cond − uncond] instead of [uncond; cond], and add the uncond half's
                          product back in float: the difference guidance amplifies gets its
                          own scales (PixArt's CFG, FLUX's true CFG; a pass over each layer's
                          output, and one over its input unless --center does it on the way;
                          --report's activation errors are of what is quantized, relative to
                          the input)
  --low-rank R            keep each quantized layer's top R singular directions in float, run
                          on the unquantized input, and quantize the rest (SVDQuant's low-rank
                          branch: 4·R·(N + K) bytes a layer, a thin float GEMM, and R FMAs an
                          output in the integer GEMM on GPUs; R at most 128 and each layer's
                          min(N, K); --ars-select error measures the whole weight); default 0:
                          none
  --low-rank-override LIST
                          comma-separated PATTERN=R (* wildcard; R 0 to 128, 0: no branch)
                          giving the matching layers another rank than --low-rank (first match
                          wins), e.g. "*.attn1.*=0,*.ff.*=64"
  --low-rank-fit F        how the branch is fitted: svd (SVDQuant's: the weight's top R
                          directions, the rest quantized), refit (then the branch's down factor
                          refitted to what the codes left: it absorbs their error in its span;
                          the default without --gptq), hessian (the branch the best rank R of
                          what the codes left in the calibration inputs' norm, the rest
                          re-quantized, twice over; needs --gptq: three quantizations a layer,
                          and on the CPU a Cholesky factor of its K×K Gram matrix and three
                          fits, ~40 s a layer at K 4608, growing as K³). Default with --gptq:
                          hessian, or refit when a branched layer's K is past 8192 (FLUX's)
  --gptq                  choose the codes by GPTQ (error-compensating rounding on the
                          calibration inputs' Σxᵀx) instead of rounding each weight; same
                          grid and artifact format; runs a calibration (cached) first;
                          with --report also each layer's output SQNR, plain vs GPTQ
  --gptq-device D         auto (default: on a GPU the layers of N·K² ≥ 2^28, where it is the
                          faster, the rest on the CPU), gpu (every layer: f32 WGSL, one at a
                          time) or cpu (f64, a worker a core); the two may round a weight that
                          sits between two levels differently
  --gptq-damp F           GPTQ's dampening: F × the mean of H's diagonal added to it (default
                          0.01; raised ×10 while H is not positive definite)
  --gptq-refit            after GPTQ, refit each row's levels to its codes in the calibration
                          inputs' norm (never more output error there): kmeans solves for them,
                          tlq searches its (Δ, z), uniform its scale; one grid a row
  --keep-fp LIST          comma-separated layer patterns kept in full precision (* wildcard);
                          default by the model's family (config _class_name): PixArt
                          ${DEFAULT_KEEP_FP.join(",")};
                          FLUX ${FLUX_KEEP_FP.join(",")}
  --out FILE.safetensors  the artifact (refused if it exists, unless --force)
  --force                 overwrite --out
  --calib-prompts N       rotations / paro / gptq: the first N calibration prompts of --calib-file,
                          or of the 10 built in (past 10: of bench/prompts/calibration_320.txt,
                          which starts with them) — through a real checkpoint's text encoders,
                          of 16 built-in captions; default each plugin's own list (the
                          statistics are cached per model and settings)
  --calib-file FILE       rotations / paro / gptq: calibration prompts, one a line (blank lines and
                          # comments skipped), e.g. bench/prompts/calibration_160.txt: GPTQ
                          gains from more (the bundled model's W4A4: +0.25 dB from 10 to 160)
  --text-encoder PATH     rotations / paro / gptq on a real checkpoint: the folder holding its
                          prompt encoders (PixArt: T5 in text_encoder/ + tokenizer/; FLUX: CLIP
                          there, T5 in text_encoder_2/ + tokenizer_2/); default the --model
                          folder's. The calibration prompts are encoded by them (FLUX needs
                          them, or --calib-embeds)
  --text-encoder-dtype D  their weights on the GPU while calibrating: auto (default: f16 where
                          the checkpoint stores f16/bf16, exact), f32 or f16 (as generate's)
  --max-sequence-length N T5's tokens per calibration prompt (default the diffusers pipeline's:
                          PixArt-α 120, PixArt-Σ 300, FLUX 512)
  --calib-embeds FILE     rotations / paro / gptq on FLUX without its text encoders:
                          safetensors with prompt_embeds [B,L,C] + pooled_prompt_embeds [B,P]
                          (as generate --caption-embeds), each batch row one calibration
                          prompt; optional latents [B,C,H,W] give the noise and the calibrated
                          size (PARO plans are per size; default FLUX's 128×128 latent)
  --calib-steps N         rotations / paro / gptq: sampler steps per calibration prompt (default 20)
  --calib-height PX, --calib-width PX
                          rotations / paro / gptq: the image size calibrated on prompts (default
                          the model's own: FLUX 1024, PixArt its sample size); a PARO plan runs
                          at its calibrated size only (with --calib-embeds: their latents' size)
  --report                print per-layer weight SQNR and activation-quantization error, and
                          with a rotation each layer's branch, J and error before/after it
  --report-prompts N      prompts the activation error is measured on (default 2; with
                          --calib-embeds its rows)
  --report-steps N        sampler steps per prompt for it (default 3)
  --adapter A             auto (default), gpu or cpu (for --report)
  --json                  print a JSON summary as the last line of stdout`;
