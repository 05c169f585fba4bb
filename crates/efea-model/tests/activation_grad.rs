//! The gradient of ReLU6 (`clamp(x, 0, 6)`) on either side of both of its bounds: one where
//! `0 < x < 6`, zero elsewhere. `EFEA_TEST_DEVICE=wgpu` checks Burn's wgpu backend the same way;
//! the whole network's gradients there first went wrong at a ReLU6 whose inputs pass 6.

mod common;

use burn::tensor::activation::relu6;
use burn::tensor::{Tensor, TensorData};

#[test]
fn relu6_passes_the_gradient_only_between_its_bounds() {
    let device = common::device().autodiff();
    let values = [-100.0f32, -2.0, -0.5, 0.5, 3.0, 5.9, 6.1, 7.0, 100.0];
    let expected = [0.0f32, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0];
    let x = Tensor::<1>::from_data(TensorData::new(values.to_vec(), [values.len()]), &device)
        .require_grad();
    let grads = relu6(x.clone()).sum().backward();
    let got: Vec<f32> = x.grad(&grads).unwrap().into_data().try_to_vec().unwrap();
    assert_eq!(got, expected, "d relu6 / dx at {values:?}");
}

fn relu6_grad_4d(permuted: bool) -> (Vec<f32>, Vec<f32>) {
    let device = common::device().autodiff();
    let dims = [4usize, 1280, 3, 3];
    let n: usize = dims.iter().product();
    let values: Vec<f32> = (1..=n).map(|i| ((i as f32) * 0.731).sin() * 9.0).collect();
    let x = if permuted {
        // The same logical values, stored channels-last.
        let mut nhwc = vec![0.0f32; n];
        for b in 0..4 {
            for c in 0..1280 {
                for p in 0..9 {
                    nhwc[(b * 9 + p) * 1280 + c] = values[(b * 1280 + c) * 9 + p];
                }
            }
        }
        Tensor::<4>::from_data(TensorData::new(nhwc, [4, 3, 3, 1280]), &device)
            .permute([0, 3, 1, 2])
    } else {
        Tensor::<4>::from_data(TensorData::new(values.clone(), dims), &device)
    };
    let leaf = x.detach().require_grad();
    let g: Vec<f32> = (0..n).map(|i| ((i as f32) * 0.37).cos()).collect();
    let g = Tensor::<4>::from_data(TensorData::new(g.clone(), dims), &device);
    let grads = (relu6(leaf.clone()) * g.clone()).sum().backward();
    let got: Vec<f32> = leaf.grad(&grads).unwrap().into_data().try_to_vec().unwrap();
    let g: Vec<f32> = g.into_data().try_to_vec().unwrap();
    let want = values
        .iter()
        .zip(&g)
        .map(|(v, g)| if *v > 0.0 && *v < 6.0 { *g } else { 0.0 })
        .collect();
    (got, want)
}

#[test]
fn relu6_of_a_feature_map() {
    for permuted in [false, true] {
        let (got, want) = relu6_grad_4d(permuted);
        let wrong = got
            .iter()
            .zip(&want)
            .filter(|(a, b)| (*a - *b).abs() > 1e-6)
            .count();
        assert_eq!(
            wrong,
            0,
            "permuted {permuted}: {wrong} of {} gradients wrong",
            got.len()
        );
    }
}
