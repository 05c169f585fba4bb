//! Training end to end on the synthetic set, on the CPU: learning, reproducibility, resuming,
//! a diverging loss, and checkpoints that are damaged, foreign or of another architecture.

use std::fs;
use std::path::Path;

use burn::tensor::Device;
use efea_model::checkpoint::{load_model, save_module};
use efea_model::{EfeaNetConfig, Preset};
use efea_train::checkpoint::{self, BEST_WEIGHTS, CONFIG_FILE};
use efea_train::config::ScheduleKind;
use efea_train::{EpochMetrics, Observer, Silent, TrainError, TrainingConfig, resume, train};

/// A network and data small enough for a few epochs in seconds: width 0.25 at 32x32 on 420
/// easy synthetic faces.
fn tiny(preset: Preset, epochs: usize) -> TrainingConfig {
    let mut config = TrainingConfig::demo();
    config.model = EfeaNetConfig::preset(preset)
        .with_width_mult(0.25)
        .with_input_size(32);
    config.data.path = Some("count=420,level=easy".into());
    config.epochs = epochs;
    config.batch_size = 16;
    // The paper's SGD, at a rate for these tiny runs (the tests were calibrated with it).
    config.optimizer = efea_train::config::OptimizerConfig::default();
    config.optimizer.lr = 0.05;
    config.schedule.step_size = 100;
    config.report_tencrop = false;
    config
}

/// Every float parameter of `model`, in visiting order.
fn parameters(model: &efea_model::EfeaNet) -> Vec<Vec<f32>> {
    struct Collect(Vec<Vec<f32>>);
    impl burn::module::ModuleVisitor for Collect {
        fn visit_float<const D: usize>(
            &mut self,
            param: &burn::module::Param<burn::tensor::Tensor<D>>,
        ) {
            self.0
                .push(param.val().into_data().try_to_vec::<f32>().unwrap());
        }
    }
    let mut collect = Collect(Vec::new());
    burn::module::Module::visit(model, &mut collect);
    collect.0
}

fn cpu() -> Vec<Device> {
    vec![Device::flex()]
}

/// The CPU backend's random generator (dropout) is one per process: runs that must repeat
/// each other exactly cannot share it with runs on other test threads.
static BACKEND_RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn exclusive() -> std::sync::MutexGuard<'static, ()> {
    BACKEND_RNG
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Stops the run (resumably) after a number of epochs.
struct StopAfter {
    epochs: usize,
    seen: usize,
}

impl Observer for StopAfter {
    fn epoch_done(&mut self, _metrics: &EpochMetrics, _best: bool) {
        self.seen += 1;
    }
    fn should_stop(&mut self) -> bool {
        self.seen >= self.epochs
    }
}

/// The columns that do not depend on timing.
fn learning(history: &[EpochMetrics]) -> Vec<[f64; 6]> {
    history
        .iter()
        .map(|m| {
            [
                m.epoch as f64,
                m.train_loss,
                m.train_accuracy,
                m.val_loss,
                m.val_accuracy,
                m.lr,
            ]
        })
        .collect()
}

#[test]
fn a_small_network_learns_the_synthetic_set_and_writes_a_complete_run() {
    let _rng = exclusive();
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    // A from-scratch MobileNetV2 sits at chance for a few hundred steps of shuffled small
    // batches before it finds the cues (PyTorch's reference does the same); stratified batches
    // get it off chance within ~200 steps of 16 easy faces.
    let mut config = tiny(Preset::Plain, 8);
    config.data.path = Some("count=700,level=easy".into());
    config.optimizer.lr = 0.01;
    config.schedule.kind = ScheduleKind::Constant;
    config.augment = efea_data::AugmentConfig::none();
    config.balanced_batches = true;
    let outcome = train(config, &run, &cpu(), &mut Silent).unwrap();
    let (split, accuracy) = outcome.test_accuracy().unwrap();
    assert_eq!(split, "PrivateTest");
    // Seven classes: chance is 14 %.
    assert!(
        accuracy > 0.4,
        "test accuracy {accuracy}: {:?}",
        learning(&outcome.history)
    );
    assert_eq!(outcome.history.len(), 8);
    assert!(outcome.history[7].train_loss < outcome.history[0].train_loss);
    for file in [
        "config.json",
        "best.bpk",
        "last.bpk",
        "metrics.csv",
        "curves.png",
        "confusion.png",
        "report.json",
        "report.md",
    ] {
        assert!(run.join(file).is_file(), "{file} is missing");
    }
    assert_eq!(
        fs::read_to_string(run.join("metrics.csv"))
            .unwrap()
            .lines()
            .count(),
        9
    );
    let names: Vec<&str> = outcome
        .report
        .splits
        .iter()
        .map(|s| s.split.as_str())
        .collect();
    assert_eq!(
        names,
        ["PublicTest", "PrivateTest"],
        "the holdout chose the epoch, so both tests are reported"
    );
    let report = fs::read_to_string(run.join("report.md")).unwrap();
    assert!(report.contains("precision") && report.contains("Confusion matrix"));

    // Inference reads the run directory alone.
    let (spec, model) = load_model(&run, &Device::flex()).unwrap();
    assert_eq!(spec.classes.len(), 7);
    assert_eq!(spec.model, outcome_model(&run));
    let logits = model.forward(burn::tensor::Tensor::zeros([2, 1, 32, 32], &Device::flex()));
    assert_eq!(logits.dims(), [2, 7]);

    scoring_matches_classes_by_name(&spec.classes, model);
}

/// The trained network with its outputs (and class names) in another order scores the same
/// as in its own, once its classes are matched to the dataset's by name; matched by index, as
/// `efea eval` once did, it scores another number.
fn scoring_matches_classes_by_name(classes: &[String], model: efea_model::EfeaNet) {
    use efea_data::classes::{ClassMap, ClassMatching, match_classes};
    use efea_train::{EvalSettings, evaluate};
    let device = Device::flex();
    let options = efea_data::LoadOptions {
        size: 32,
        ..Default::default()
    };
    let spec = Path::new("count=700,level=easy");
    let dataset = efea_data::load(efea_data::DatasetKind::Synth, Some(spec), &options).unwrap();
    let test = dataset.split("PrivateTest").unwrap();
    let settings = EvalSettings {
        input_size: 32,
        batch_size: 64,
        tta: None,
    };
    let score = |model: &efea_model::EfeaNet, matching: &ClassMatching| {
        evaluate(model, &dataset, test, settings, matching, &device, |_| {})
    };
    let own = score(
        &model,
        &match_classes(classes, &dataset.classes, &ClassMap::default()).unwrap(),
    );
    assert_eq!(own.samples, test.len());
    assert!(own.accuracy() > 0.4, "{}", own.accuracy());

    // Output k of the permuted network is output order[k] of the trained one.
    let order = [3usize, 6, 0, 5, 1, 4, 2];
    let permuted_classes: Vec<String> = order.iter().map(|&k| classes[k].to_lowercase()).collect();
    let permuted = permute_outputs(model, &order);
    let matching =
        match_classes(&permuted_classes, &dataset.classes, &ClassMap::default()).unwrap();
    assert!(!matching.is_identity());
    let by_name = score(&permuted, &matching);
    assert_eq!(by_name.confusion, own.confusion);
    assert!(
        (by_name.loss - own.loss).abs() < 1e-6,
        "{} {}",
        by_name.loss,
        own.loss
    );
    let by_index = score(&permuted, &ClassMatching::identity(7));
    assert_ne!(
        by_index.accuracy(),
        own.accuracy(),
        "the permutation must change what index matching scores"
    );
}

/// `model` with its classifier's outputs reordered: new output k is old output `order[k]`.
fn permute_outputs(mut model: efea_model::EfeaNet, order: &[usize]) -> efea_model::EfeaNet {
    use burn::module::Param;
    use burn::tensor::{Tensor, TensorData};
    let device = Device::flex();
    let weight = model.classifier.weight.val();
    let [inputs, outputs] = weight.dims();
    let values: Vec<f32> = weight.into_data().iter::<f32>().collect();
    let permuted: Vec<f32> = (0..inputs)
        .flat_map(|i| order.iter().map(move |&k| (i, k)))
        .map(|(i, k)| values[i * outputs + k])
        .collect();
    model.classifier.weight = Param::from_tensor(Tensor::from_data(
        TensorData::new(permuted, [inputs, outputs]),
        &device,
    ));
    let bias = model
        .classifier
        .bias
        .take()
        .expect("the classifier has a bias");
    let values: Vec<f32> = bias.val().into_data().iter::<f32>().collect();
    let permuted: Vec<f32> = order.iter().map(|&k| values[k]).collect();
    model.classifier.bias = Some(Param::from_tensor(Tensor::from_data(
        TensorData::new(permuted, [outputs]),
        &device,
    )));
    model
}

fn outcome_model(run: &Path) -> EfeaNetConfig {
    TrainingConfig::read(&run.join(CONFIG_FILE)).unwrap().model
}

#[test]
fn an_interrupted_and_resumed_run_equals_an_uninterrupted_one() {
    let _rng = exclusive();
    let dir = tempfile::tempdir().unwrap();
    let mut config = tiny(Preset::Full, 3);
    // Every random stream in play: augmentation, dropout, mixing, label smoothing.
    config.regularization.mixup_alpha = 0.4;
    config.regularization.label_smoothing = 0.1;
    config.data.path = Some("count=280,level=easy".into());

    let whole = train(
        config.clone(),
        &dir.path().join("whole"),
        &cpu(),
        &mut Silent,
    )
    .unwrap();

    let run = dir.path().join("interrupted");
    let stopped = train(config, &run, &cpu(), &mut StopAfter { epochs: 1, seen: 0 }).unwrap_err();
    assert!(
        matches!(stopped, TrainError::Stopped { epoch: 1 }),
        "{stopped}"
    );
    assert!(checkpoint::latest(&run).unwrap().ends_with("epoch-0001"));
    let resumed = resume(&run, &cpu(), &mut Silent).unwrap();

    assert_eq!(learning(&resumed.history), learning(&whole.history));
    assert_eq!(resumed.best, whole.best);
    assert_eq!(
        resumed.report.splits[1].confusion,
        whole.report.splits[1].confusion
    );
    // The same weights, value for value (the file's header holds parameter ids that differ
    // from run to run, so its bytes do not), and so the same answers.
    let (_, resumed_model) = load_model(&run, &Device::flex()).unwrap();
    let (_, whole_model) = load_model(&dir.path().join("whole"), &Device::flex()).unwrap();
    let (resumed_values, whole_values) = (parameters(&resumed_model), parameters(&whole_model));
    assert!(
        resumed_values.len() > 100,
        "{} tensors",
        resumed_values.len()
    );
    assert!(
        resumed_values == whole_values,
        "the resumed run's best weights differ from the uninterrupted run's"
    );
    let input = burn::tensor::Tensor::<4>::random(
        [4, 1, 32, 32],
        burn::tensor::Distribution::Default,
        &Device::flex(),
    );
    assert_eq!(
        resumed_model.forward(input.clone()).into_data(),
        whole_model.forward(input).into_data()
    );
}

#[test]
fn a_diverging_loss_stops_cleanly_and_keeps_the_last_good_checkpoint() {
    let _rng = exclusive();
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let mut config = tiny(Preset::Plain, 3);
    config.data.path = Some("count=140,level=easy".into());
    // Epoch 1 at a sane rate, then an absurd one.
    config.schedule.kind = ScheduleKind::Step;
    config.schedule.step_size = 1;
    config.schedule.gamma = 1e38;
    let err = train(config.clone(), &run, &cpu(), &mut Silent).unwrap_err();
    assert!(
        matches!(err, TrainError::NonFinite { epoch: 2, .. }),
        "{err}"
    );
    let message = err.to_string();
    assert!(
        message.contains("epoch 2") && !message.contains('\n'),
        "{message}"
    );
    let last_good = checkpoint::latest(&run).unwrap();
    assert!(last_good.ends_with("epoch-0001"));
    let model = config
        .model
        .clone()
        .with_num_classes(7)
        .init(&Device::flex().autodiff());
    let (_, _, state) = checkpoint::load(
        &last_good,
        model,
        efea_train::optim::build(&config.optimizer),
    )
    .unwrap();
    assert_eq!(state.epochs_done, 1);
    assert!(state.history[0].train_loss.is_finite());
    assert!(run.join(BEST_WEIGHTS).is_file() && run.join("metrics.csv").is_file());

    // A damaged optimizer state is named, not a panic.
    let optimizer = last_good.join("optimizer.bpk");
    let bytes = fs::read(&optimizer).unwrap();
    fs::write(&optimizer, &bytes[..bytes.len() / 2]).unwrap();
    let err = resume(&run, &cpu(), &mut Silent).unwrap_err().to_string();
    assert!(
        err.contains("optimizer.bpk") && !err.contains('\n'),
        "{err}"
    );
}

#[test]
fn damaged_foreign_and_other_architecture_checkpoints_are_one_line_errors() {
    let _rng = exclusive();
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path();
    let mut config = tiny(Preset::Full, 1);
    config.classes = efea_data::classes::FER2013_CLASSES
        .iter()
        .map(|c| c.to_string())
        .collect();
    efea_train::write_config(&config, run).unwrap();
    let best = run.join(BEST_WEIGHTS);
    let device = Device::flex();
    save_module(&config.model.init(&device), &best).unwrap();
    load_model(run, &device).unwrap();

    let one_line_naming = |what: &str| {
        let err = load_model(run, &device)
            .err()
            .unwrap_or_else(|| panic!("{what} loaded"))
            .to_string();
        assert!(
            err.contains("best.bpk") && !err.contains('\n'),
            "{what}: {err}"
        );
        err
    };
    let bytes = fs::read(&best).unwrap();
    fs::write(&best, &bytes[..bytes.len() / 3]).unwrap();
    one_line_naming("a truncated file");
    fs::write(&best, b"{\"not\": \"a checkpoint\"}").unwrap();
    one_line_naming("a foreign file");
    let plain = efea_train::cv::with_preset(&config.model, Preset::Plain);
    save_module(&plain.init(&device), &best).unwrap();
    let err = one_line_naming("another architecture");
    assert!(err.contains("architecture"), "{err}");
}

/// Abandons the run after a number of batches of the second epoch.
struct AbortAt {
    epoch: usize,
    batch: usize,
    current: (usize, usize),
}

impl Observer for AbortAt {
    fn batch_done(&mut self, progress: &efea_train::BatchProgress) {
        self.current = (progress.epoch, progress.batch);
    }
    fn should_abort(&mut self) -> bool {
        self.current == (self.epoch, self.batch)
    }
}

#[test]
fn an_abort_mid_epoch_stops_at_that_batch_and_keeps_the_last_epoch_s_checkpoint() {
    // Seeds the backend's generator: must not run beside the runs that repeat each other.
    let _rng = exclusive();
    let dir = tempfile::tempdir().unwrap();
    let mut config = tiny(Preset::Plain, 3);
    config.data.path = Some("count=140,level=easy".into());
    let run = dir.path().join("run");
    let mut observer = AbortAt {
        epoch: 2,
        batch: 3,
        current: (0, 0),
    };
    let error = train(config, &run, &cpu(), &mut observer).unwrap_err();
    assert!(
        matches!(error, TrainError::Interrupted { epoch: 2, batch: 3 }),
        "{error}"
    );
    assert!(checkpoint::latest(&run).unwrap().ends_with("epoch-0001"));
    assert!(resume(&run, &cpu(), &mut Silent).is_ok());
}
