//! What the real binary does with bad input: exit non-zero with one clear message on stderr
//! that names the problem, never a panic. And what `eval` prints when all is well.

mod common;

use std::path::Path;
use std::process::Output;

use common::{scratchnet, scratchnet_ok, train_args, Fixture, N_TEST_IMAGES, VAL_SIZE};

/// Asserts that the run failed cleanly and that stderr contains every one of `needles`.
fn assert_fails_with(output: &Output, needles: &[&str]) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "expected a failure, got {}\nstdout:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout)
    );
    assert!(
        !stderr.contains("panicked"),
        "the binary panicked:\n{stderr}"
    );
    for needle in needles {
        assert!(
            stderr.contains(needle),
            "stderr does not mention {needle:?}:\n{stderr}"
        );
    }
}

/// A tiny new v2 run of 1 epoch with the shared fixture flags.
fn train_tiny(data: &Path, out: &Path) -> Output {
    scratchnet(train_args("v2", data, out, 1, 7))
}

/// `train --resume RUN --epochs EPOCHS` with `extra` flags after them.
fn resume(run: &Path, epochs: usize, extra: &[&str]) -> Output {
    let mut args = vec![
        "train".to_string(),
        "--resume".into(),
        run.display().to_string(),
        "--epochs".into(),
        epochs.to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    scratchnet(args)
}

/// The `key=value` fields of the last line of `stdout`, in order.
fn last_line_fields(stdout: &str) -> Vec<(String, String)> {
    let line = stdout.lines().last().expect("eval prints a line");
    line.split(' ')
        .map(|field| {
            let (key, value) = field
                .split_once('=')
                .unwrap_or_else(|| panic!("{field:?} in {line:?} is not key=value"));
            (key.to_string(), value.to_string())
        })
        .collect()
}

// Pins that a wrong --data path is reported with the folder, not as a file error or panic.
#[test]
fn missing_data_folder_is_named() {
    let fixture = Fixture::new();
    let missing = fixture.path("no-such-cifar");
    let output = train_tiny(&missing, &fixture.path("run"));
    assert_fails_with(&output, &[&missing.display().to_string()]);
}

// Pins that a truncated batch file names the file, the record size and the actual size.
#[test]
fn batch_file_of_1200_bytes_names_file_record_size_and_length() {
    let fixture = Fixture::new();
    std::fs::write(fixture.data.join("data_batch_3.bin"), vec![0u8; 1200]).unwrap();
    let output = train_tiny(&fixture.data, &fixture.path("run"));
    assert_fails_with(&output, &["data_batch_3.bin", "3073", "1200"]);
}

// Pins that a label outside 0-9 names the file and the label rather than panicking in an
// index later.
#[test]
fn label_12_names_file_and_label() {
    let fixture = Fixture::new();
    let path = fixture.data.join("data_batch_2.bin");
    let mut bytes = std::fs::read(&path).unwrap();
    // Record 4 starts at byte 4 * 3073; its first byte is the label.
    bytes[4 * 3073] = 12;
    std::fs::write(&path, bytes).unwrap();
    let output = train_tiny(&fixture.data, &fixture.path("run"));
    assert_fails_with(&output, &["data_batch_2.bin", "12"]);
}

// Pins that a misspelt built-in recipe is refused, naming it and the built-ins.
#[test]
fn unknown_recipe_name_is_refused() {
    let fixture = Fixture::new();
    let args = train_args("v3", &fixture.data, &fixture.path("run"), 1, 7);
    let output = scratchnet(&args);
    assert_fails_with(&output, &["v3", "original", "v2"]);
}

// Pins that a typo in a recipe file is an error naming the key, not a silent default.
#[test]
fn recipe_file_with_unknown_key_names_the_key() {
    let fixture = Fixture::new();
    let text =
        include_str!("../../../recipes/v2.toml").replace("label_smoothing", "lable_smoothing");
    let recipe = fixture.path("typo.toml");
    std::fs::write(&recipe, text).unwrap();
    let args = train_args(
        &recipe.display().to_string(),
        &fixture.data,
        &fixture.path("run"),
        1,
        7,
    );
    assert_fails_with(&scratchnet(&args), &["lable_smoothing"]);
}

// Pins that --resume on a folder without a run says which folder, without creating a run.
#[test]
fn resume_on_a_folder_without_a_run_names_it() {
    let fixture = Fixture::new();
    let empty = fixture.path("empty");
    std::fs::create_dir(&empty).unwrap();
    let output = scratchnet(["train", "--resume", &empty.display().to_string()]);
    assert_fails_with(&output, &[&empty.display().to_string()]);
    assert_eq!(std::fs::read_dir(&empty).unwrap().count(), 0);
}

// Pins that a hold-out larger than the data names the flag and both sizes.
#[test]
fn val_size_larger_than_the_data_names_the_flag() {
    let fixture = Fixture::new();
    let mut args = train_args("v2", &fixture.data, &fixture.path("run"), 1, 7);
    let val_idx = args.iter().position(|a| a == "--val-size").unwrap() + 1;
    args[val_idx] = "400".to_string();
    assert_fails_with(&scratchnet(&args), &["--val-size", "400", "300"]);
}

// Pins that a weights file that is not safetensors is named, not a panic in the parser.
#[test]
fn eval_of_random_bytes_names_the_file() {
    let fixture = Fixture::new();
    let junk = fixture.path("junk.safetensors");
    // Bytes from a fixed LCG: the 8-byte header length they start with is absurd.
    let mut x = 12345u32;
    let bytes: Vec<u8> = (0..4096)
        .map(|_| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            (x >> 24) as u8
        })
        .collect();
    std::fs::write(&junk, bytes).unwrap();
    let output = scratchnet([
        "eval",
        "--weights",
        &junk.display().to_string(),
        "--data",
        &fixture.data.display().to_string(),
    ]);
    assert_fails_with(&output, &["junk.safetensors"]);
}

/// Locks `path` as a running scratchnet would. Waits a moment if it is held: a child
/// process that another test forks in between inherits this process's open files, locks
/// included, until it execs.
fn lock_held_by_this_test(path: &Path) -> std::fs::File {
    let file = std::fs::File::options()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .unwrap();
    for _ in 0..100 {
        match file.try_lock() {
            Ok(()) => return file,
            Err(std::fs::TryLockError::WouldBlock) => {
                std::thread::sleep(std::time::Duration::from_millis(20))
            }
            Err(e) => panic!("locking {}: {e}", path.display()),
        }
    }
    panic!(
        "{} stayed locked for 2 s after its run ended",
        path.display()
    );
}

// Pins that a second run into a folder another run is writing is refused (the test holds
// the folder's lock as a running scratchnet would), for a new run and for --resume.
#[test]
fn a_run_folder_in_use_is_refused() {
    let fixture = Fixture::new();
    let run = fixture.path("run");
    scratchnet_ok(train_args("v2", &fixture.data, &run, 1, 7));
    assert!(run.join("lock").exists(), "a run leaves its lock file");
    let _run_lock = lock_held_by_this_test(&run.join("lock"));

    let busy = fixture.path("busy");
    std::fs::create_dir_all(&busy).unwrap();
    let _busy_lock = lock_held_by_this_test(&busy.join("lock"));
    let output = train_tiny(&fixture.data, &busy);
    assert_fails_with(&output, &["is in use by another scratchnet run"]);
    assert!(
        !busy.join("run.json").exists(),
        "the refused run wrote into the folder"
    );

    let output = resume(&run, 2, &[]);
    assert_fails_with(&output, &["is in use by another scratchnet run"]);
}

// Pins that a new run never overwrites a finished one: it is refused, the message points at
// --resume, and the old run's files are untouched.
#[test]
fn new_run_into_a_folder_holding_a_run_is_refused() {
    let fixture = Fixture::new();
    let out = fixture.path("run");
    scratchnet_ok(train_args("v2", &fixture.data, &out, 1, 7));
    let metrics_before = std::fs::read(out.join("metrics.csv")).unwrap();
    let recipe_before = std::fs::read(out.join("recipe.toml")).unwrap();

    let output = scratchnet(train_args("original", &fixture.data, &out, 2, 8));
    assert_fails_with(&output, &["--resume", &out.display().to_string()]);
    assert_eq!(
        std::fs::read(out.join("metrics.csv")).unwrap(),
        metrics_before
    );
    assert_eq!(
        std::fs::read(out.join("recipe.toml")).unwrap(),
        recipe_before
    );
}

// Pins the output format of `eval` (last line, fixed keys, n = images evaluated) and that it
// agrees with the test evaluation `train` printed for the same best.safetensors.
#[test]
fn eval_prints_loss_accuracy_and_count_for_test_and_val() {
    let fixture = Fixture::new();
    let out = fixture.path("run");
    let train_stdout = scratchnet_ok(train_args("v2", &fixture.data, &out, 2, 7));
    let weights = out.join("best.safetensors").display().to_string();
    let data = fixture.data.display().to_string();

    // 1. The test split.
    let test_stdout = scratchnet_ok(["eval", "--weights", &weights, "--data", &data]);
    let fields = last_line_fields(&test_stdout);
    let keys: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["test_loss", "test_acc", "n"], "{test_stdout}");
    assert_eq!(fields[2].1, N_TEST_IMAGES.to_string());
    let loss: f64 = fields[0].1.parse().unwrap();
    let acc: f64 = fields[1].1.parse().unwrap();
    assert!(loss.is_finite() && loss > 0.0, "{test_stdout}");
    assert!((0.0..=100.0).contains(&acc), "{test_stdout}");
    // Accuracy is a percentage of 50 images: a multiple of 2.
    assert_eq!(acc % 2.0, 0.0, "{test_stdout}");

    // `train` evaluated the same network on the same images at the end of the run.
    let train_fields = last_line_fields(&train_stdout);
    assert_eq!(
        &train_fields[1..],
        &fields[..],
        "train said:\n{train_stdout}"
    );

    // 2. The validation split, as held out in training.
    let val_size = VAL_SIZE.to_string();
    let val_stdout = scratchnet_ok([
        "eval",
        "--weights",
        &weights,
        "--data",
        &data,
        "--split",
        "val",
        "--val-size",
        &val_size,
    ]);
    let fields = last_line_fields(&val_stdout);
    let keys: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["val_loss", "val_acc", "n"], "{val_stdout}");
    assert_eq!(fields[2].1, val_size);
    let acc: f64 = fields[1].1.parse().unwrap();
    assert!((0.0..=100.0).contains(&acc), "{val_stdout}");

    // 3. Without --val-size: the run's own hold-out, from the run.json beside the weights.
    let default_stdout = scratchnet_ok([
        "eval",
        "--weights",
        &weights,
        "--data",
        &data,
        "--split",
        "val",
    ]);
    assert_eq!(
        last_line_fields(&default_stdout),
        fields,
        "{default_stdout}"
    );
}

// Pins that --epochs 0 is refused instead of leaving an empty run folder behind.
#[test]
fn zero_epochs_is_refused() {
    let fixture = Fixture::new();
    let output = scratchnet(train_args("v2", &fixture.data, &fixture.path("run"), 0, 7));
    assert_fails_with(&output, &["--epochs"]);
    assert!(!fixture.path("run").exists());
}

// Pins that a bad test_batch.bin fails before training, not after the last epoch.
#[test]
fn a_bad_test_batch_fails_before_the_first_epoch() {
    let fixture = Fixture::new();
    let path = fixture.data.join("test_batch.bin");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[0] = 200;
    std::fs::write(&path, bytes).unwrap();
    let output = train_tiny(&fixture.data, &fixture.path("run"));
    assert_fails_with(&output, &["test_batch.bin", "200"]);
    assert!(!String::from_utf8_lossy(&output.stdout).contains("epoch=1"));
}

// Pins that a resume without the run's best.safetensors is refused before training, and
// that --val-size cannot be changed on a resume.
#[test]
fn resume_without_the_best_model_or_with_a_new_val_size_is_refused() {
    let fixture = Fixture::new();
    let run = fixture.path("run");
    scratchnet_ok(train_args("v2", &fixture.data, &run, 1, 7));
    let output = resume(&run, 2, &["--val-size", "10"]);
    assert_eq!(output.status.code(), Some(2), "{output:?}");

    std::fs::remove_file(run.join("best.safetensors")).unwrap();
    assert_fails_with(&resume(&run, 2, &[]), &["has no best.safetensors"]);
    let metrics = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    assert_eq!(
        metrics.lines().count(),
        2,
        "the refused resume trained:\n{metrics}"
    );
}

// Pins that a resume whose data folder has moved asks for --data instead of the fetch script.
#[test]
fn resume_after_the_data_moved_asks_for_data() {
    let fixture = Fixture::new();
    let data = fixture.path("data-here");
    std::fs::create_dir(&data).unwrap();
    for entry in std::fs::read_dir(&fixture.data).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), data.join(entry.file_name())).unwrap();
    }
    let run = fixture.path("run");
    scratchnet_ok(train_args("v2", &data, &run, 1, 7));
    std::fs::rename(&data, fixture.path("data-moved")).unwrap();
    let output = resume(&run, 2, &[]);
    assert_fails_with(&output, &["is not there any more: pass --data"]);
}

// Pins that --resume refuses a run folder whose recipe.toml was edited after the run
// started, and accepts one that was only reformatted.
#[test]
fn resume_with_an_edited_recipe_is_refused() {
    let fixture = Fixture::new();
    let run = fixture.path("run");
    scratchnet_ok(train_args("v2", &fixture.data, &run, 1, 7));
    let recipe_path = run.join("recipe.toml");
    let text = std::fs::read_to_string(&recipe_path).unwrap();

    assert!(text.contains("lr = 0.001\n"), "{text}");
    std::fs::write(&recipe_path, text.replace("lr = 0.001\n", "lr = 0.002\n")).unwrap();
    assert_fails_with(
        &resume(&run, 2, &[]),
        &["recipe.toml is not the recipe this run was trained with"],
    );

    std::fs::write(&recipe_path, format!("# a comment\n\n{text}")).unwrap();
    let output = resume(&run, 2, &[]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

// Pins that a diverged run (NaN loss) exits non-zero with a message instead of ending
// quietly without a best model.
#[test]
fn a_diverging_run_fails_naming_the_epoch() {
    let fixture = Fixture::new();
    let text = include_str!("../../../recipes/v2.toml").replace("lr = 1e-3", "lr = 1e30");
    let recipe = fixture.path("huge-lr.toml");
    std::fs::write(&recipe, text).unwrap();
    let args = train_args(
        &recipe.display().to_string(),
        &fixture.data,
        &fixture.path("run"),
        2,
        7,
    );
    assert_fails_with(&scratchnet(&args), &["epoch 1", "diverged"]);
}

// Pins that resuming on other images is refused: the resumed run would not be the run.
#[test]
fn resume_on_changed_data_is_refused() {
    let fixture = Fixture::new();
    let run = fixture.path("run");
    scratchnet_ok(train_args("v2", &fixture.data, &run, 1, 7));
    let path = fixture.data.join("data_batch_5.bin");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[100] ^= 1;
    std::fs::write(&path, bytes).unwrap();
    let output = scratchnet([
        "train",
        "--resume",
        &run.display().to_string(),
        "--epochs",
        "2",
    ]);
    assert_fails_with(&output, &["not the ones this run trained on"]);
}

// Pins that a resume with nothing left to do says so instead of rewriting run.json.
#[test]
fn resume_to_no_more_epochs_is_refused() {
    let fixture = Fixture::new();
    let run = fixture.path("run");
    scratchnet_ok(train_args("v2", &fixture.data, &run, 1, 7));
    let before = std::fs::read(run.join("run.json")).unwrap();
    let output = scratchnet([
        "train",
        "--resume",
        &run.display().to_string(),
        "--epochs",
        "1",
    ]);
    assert_fails_with(&output, &["--epochs"]);
    assert_eq!(std::fs::read(run.join("run.json")).unwrap(), before);
}

// Pins that a last batch of one image is refused before training: batch norm panicked on
// it after a whole epoch (`--val-size 4999` on the real data gives 45,001 images).
#[test]
fn a_last_batch_of_one_image_is_refused_before_training() {
    let fixture = Fixture::new();
    let mut args = train_args("v2", &fixture.data, &fixture.path("run"), 1, 7);
    // 241 images in batches of 20 leave one.
    args.extend(["--train-limit".to_string(), "241".to_string()]);
    let output = scratchnet(args);
    assert_fails_with(
        &output,
        &["241 training images", "batches of 20", "last batch of one"],
    );
    assert!(!fixture.path("run").exists());
}

// Pins that a batch of one image, which batch norm cannot normalise, is refused.
#[test]
fn batch_size_1_is_refused() {
    let fixture = Fixture::new();
    let mut args = train_args("v2", &fixture.data, &fixture.path("run"), 1, 7);
    let at = args.iter().position(|a| a == "--batch-size").unwrap() + 1;
    args[at] = "1".to_string();
    assert_fails_with(&scratchnet(args), &["batch_size 1"]);
    assert_fails_with(
        &scratchnet(["bench", "step", "--batch-size", "1"]),
        &["--batch-size"],
    );
}

// Pins that an absurd --threads is refused instead of spawning 100,000 threads.
#[test]
fn a_huge_thread_count_is_refused() {
    let output = scratchnet(["bench", "eval", "--threads", "100000"]);
    assert_fails_with(&output, &["--threads 100000"]);
}

// Pins that a recipe name cannot put the run folder outside `runs/`.
#[test]
fn a_recipe_name_with_a_path_is_refused() {
    let fixture = Fixture::new();
    let recipe = fixture.path("escape.toml");
    let toml = "name = \"../escape\"\nnetwork = \"lenet5-bn\"\nepochs = 1\nbatch_size = 20\n";
    std::fs::write(&recipe, toml).unwrap();
    let args = [
        "train",
        "--recipe",
        &recipe.display().to_string(),
        "--data",
        &fixture.data.display().to_string(),
        "--val-size",
        "50",
    ];
    assert_fails_with(&scratchnet(args), &["name \"../escape\""]);
}

// Pins that a reader closing stdout early (`| head`) ends the command quietly with
// success, as a filter does; println! used to panic with "Broken pipe".
#[test]
fn a_closed_stdout_ends_the_command_quietly() {
    use std::io::Read;
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_scratchnet"))
        .args(["bench", "conv", "--iters", "1", "--batch-size", "2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    let mut first = [0u8; 8];
    child
        .stdout
        .take()
        .expect("piped")
        .read_exact(&mut first)
        .expect("the first line");
    // stdout is closed now; the next line hits a broken pipe.
    let output = child.wait_with_output().expect("the binary ends");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{}: {stderr}", output.status);
    assert!(!stderr.contains("panicked"), "{stderr}");
}

// Pins that a run whose reader goes away keeps the epoch whose line found the pipe closed,
// and resumes: the line used to be printed before the state was saved, so `| head -n 1`
// lost epoch 1 and left a folder `--resume` refused.
#[test]
fn a_run_stopped_by_a_closed_stdout_keeps_the_epoch_it_was_printing() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let fixture = Fixture::new();
    let run = fixture.path("run");
    let mut child = Command::new(env!("CARGO_BIN_EXE_scratchnet"))
        .args(train_args("v2", &fixture.data, &run, 3, 7))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
    let header = lines.next().expect("a header line").unwrap();
    assert!(header.starts_with("run="), "{header}");
    // Closed before epoch 1's line is written.
    drop(lines);
    let output = child.wait_with_output().expect("the binary ends");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{}: {stderr}", output.status);
    assert!(!stderr.contains("panicked"), "{stderr}");

    let metrics = std::fs::read_to_string(run.join("metrics.csv")).expect("metrics.csv");
    assert_eq!(metrics.lines().count(), 2, "header and epoch 1:\n{metrics}");
    let resumed = scratchnet_ok([
        "train",
        "--resume",
        &run.display().to_string(),
        "--epochs",
        "3",
    ]);
    assert!(resumed.contains("epoch=3 "), "{resumed}");
}
