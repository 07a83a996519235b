//! `scratchnet`: train and evaluate small convolutional networks on CIFAR-10, on a CPU.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc keeps freed memory for reuse. With the system allocator every step's large
/// tensors came back from the kernel as fresh pages, and faulting them in cost a tenth of
/// the step.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `println!` that hands back the write error instead of panicking on it: when the reader
/// of stdout goes away (`scratchnet bench conv | head`), the command stops there and exits
/// quietly with success (see `main`), as a filter does. Every run state is saved before its
/// line is printed, so a training run stopped this way resumes from that epoch.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)
            .map_err(|e| anyhow::Error::new(e).context("writing to standard output"))
    }};
}

mod bench_cmd;
mod checkpoint;
mod data;
mod eval_cmd;
mod evaluate;
mod metrics;
mod recipe;
mod run_info;
mod train_cmd;
mod trainer;

#[derive(Parser, Debug)]
#[command(
    name = "scratchnet",
    version,
    about = "CNNs on CIFAR-10 from scratch, bit-for-bit reproducible"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Train a network from a recipe, or resume a run.
    Train(train_cmd::TrainArgs),
    /// Evaluate a weights file on the test or validation images.
    Eval(eval_cmd::EvalArgs),
    /// Time the conv kernels, a training step or an evaluation at the network's shapes.
    Bench(bench_cmd::BenchArgs),
}

/// More worker threads than any machine this is meant for has cores: beyond it `--threads`
/// is a typo (100000 threads took the machine down before the run began).
const MAX_THREADS: usize = 1024;

/// The number of worker threads: `--threads`, or one per core.
fn thread_count(threads: Option<usize>) -> anyhow::Result<usize> {
    let n = threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if n == 0 {
        anyhow::bail!("--threads must be at least 1");
    }
    if n > MAX_THREADS {
        anyhow::bail!("--threads {n} is more than {MAX_THREADS}");
    }
    Ok(n)
}

/// Runs `f` on a thread of a pool of `n` workers. Running the whole command inside the
/// pool, rather than handing each parallel loop to it from the main thread, saves a
/// thread wake-up per loop: dozens per training step.
fn in_pool<T: Send>(n: usize, f: impl FnOnce() -> anyhow::Result<T> + Send) -> anyhow::Result<T> {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(n).build()?;
    pool.install(f)
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Train(args) => {
            let threads = thread_count(args.threads)?;
            in_pool(threads, || train_cmd::run_train(args, threads))
        }
        Command::Eval(args) => {
            let threads = thread_count(args.threads)?;
            in_pool(threads, || eval_cmd::run_eval(args))
        }
        Command::Bench(args) => {
            let threads = thread_count(args.threads)?;
            in_pool(threads, || bench_cmd::run_bench(args, threads))
        }
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Whether the error is stdout's reader having gone away.
fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
