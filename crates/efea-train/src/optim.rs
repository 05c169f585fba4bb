//! Optimizers of the recipe, built from [`OptimizerConfig`], and PyTorch's global-norm gradient
//! clipping (Burn's own clips each parameter separately).

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamWConfig, GradientsParams, ModuleOptimizer, SgdConfig};
use burn::tensor::Tensor;

use crate::config::{OptimizerConfig, OptimizerKind};

/// The optimizer `config` describes, with an empty state.
pub fn build(config: &OptimizerConfig) -> ModuleOptimizer {
    match config.kind {
        OptimizerKind::Sgd => {
            let momentum = (config.momentum > 0.0).then(|| {
                MomentumConfig::new()
                    .with_momentum(config.momentum)
                    // Burn defaults to 0.1; the paper's PyTorch recipe uses 0.
                    .with_dampening(config.dampening)
                    .with_nesterov(config.nesterov)
            });
            let decay = (config.weight_decay > 0.0)
                .then(|| WeightDecayConfig::new(config.weight_decay as f32));
            SgdConfig::new()
                .with_momentum(momentum)
                .with_weight_decay(decay)
                .init()
        }
        OptimizerKind::Adamw => AdamWConfig::new()
            .with_beta_1(config.betas.0 as f32)
            .with_beta_2(config.betas.1 as f32)
            .with_epsilon(config.epsilon as f32)
            .with_weight_decay(config.weight_decay as f32)
            .init(),
    }
}

/// Scales `grads` so that their global L2 norm is at most `max_norm`, as PyTorch's
/// `clip_grad_norm_`; returns the norm before clipping.
pub fn clip_global_norm<M: Module>(grads: &mut GradientsParams, module: &M, max_norm: f64) -> f64 {
    let mut norm = SquaredNorm { grads, sum: None };
    module.visit(&mut norm);
    let Some(sum) = norm.sum else { return 0.0 };
    let total = (sum.into_scalar::<f32>() as f64).sqrt();
    // PyTorch adds 1e-6 to the norm in the ratio.
    let scale = max_norm / (total + 1e-6);
    if scale < 1.0 {
        module.visit(&mut Scale {
            grads,
            scale: scale as f32,
        });
    }
    total
}

struct SquaredNorm<'a> {
    grads: &'a GradientsParams,
    sum: Option<Tensor<1>>,
}

impl ModuleVisitor for SquaredNorm<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(grad) = self.grads.get::<D>(param.id) {
            let squares = grad.powi_scalar(2).sum();
            self.sum = Some(match self.sum.take() {
                Some(sum) => sum + squares,
                None => squares,
            });
        }
    }
}

struct Scale<'a> {
    grads: &'a mut GradientsParams,
    scale: f32,
}

impl ModuleVisitor for Scale<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(grad) = self.grads.remove::<D>(param.id) {
            self.grads.register(param.id, grad.mul_scalar(self.scale));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::LinearConfig;
    use burn::tensor::Device;

    #[test]
    fn global_norm_clipping_rescales_all_gradients_together() {
        let device = Device::flex().autodiff();
        let layer = LinearConfig::new(4, 3).init(&device);
        let x = Tensor::<2>::ones([2, 4], &device).mul_scalar(10.0);
        let grads_of =
            || GradientsParams::from_grads(layer.forward(x.clone()).sum().backward(), &layer);
        let grads = grads_of();
        let mut clipped = grads_of();
        let before = clip_global_norm(&mut clipped, &layer, 1.0);
        assert!(before > 1.0);
        let w0: Tensor<2> = grads.get(layer.weight.id).unwrap();
        let w1: Tensor<2> = clipped.get(layer.weight.id).unwrap();
        let after = clip_global_norm(&mut clipped, &layer, 1.0);
        assert!((after - 1.0).abs() < 1e-4, "{after}");
        let ratio: f32 = (w1 / w0).mean().into_scalar();
        assert!((ratio as f64 - 1.0 / before).abs() < 1e-4);
    }
}
