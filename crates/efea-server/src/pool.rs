//! A bounded pool for inference: at most `workers` jobs run at once on blocking threads (never
//! on the async runtime's), at most `queue` more wait, and a request beyond that is refused at
//! once, so that latency stays bounded under overload instead of growing with the backlog.

use std::sync::Arc;

use tokio::sync::Semaphore;

/// Why a job did not run to completion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    /// Every worker is busy and the queue is full.
    #[error("all {0} inference slots are taken; retry shortly")]
    Busy(usize),
    /// The job panicked (its error is logged; the pool goes on).
    #[error("inference failed unexpectedly")]
    Panicked,
}

/// See the module documentation. Cloning shares the pool.
#[derive(Debug, Clone)]
pub struct Pool {
    /// Running plus waiting jobs.
    admission: Arc<Semaphore>,
    /// Running jobs.
    workers: Arc<Semaphore>,
    capacity: usize,
    worker_count: usize,
}

impl Pool {
    pub fn new(workers: usize, queue: usize) -> Self {
        let workers = workers.max(1);
        Self {
            admission: Arc::new(Semaphore::new(workers + queue)),
            workers: Arc::new(Semaphore::new(workers)),
            capacity: workers + queue,
            worker_count: workers,
        }
    }

    /// Runs `job` on a blocking thread once a worker is free, or fails at once with
    /// [`PoolError::Busy`] when the queue is full. If the caller stops waiting (a timeout, a
    /// closed connection), a job that has started still finishes and holds its slot till then.
    pub async fn run<T, F>(&self, job: F) -> Result<T, PoolError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let admitted = Arc::clone(&self.admission)
            .try_acquire_owned()
            .map_err(|_| PoolError::Busy(self.capacity))?;
        let worker = Arc::clone(&self.workers)
            .acquire_owned()
            .await
            .expect("the pool never closes its semaphores");
        let handle = tokio::task::spawn_blocking(move || {
            let _slots = (admitted, worker);
            job()
        });
        handle.await.map_err(|_| PoolError::Panicked)
    }

    /// Jobs running now.
    pub fn running(&self) -> usize {
        self.worker_count - self.workers.available_permits()
    }

    /// Jobs running or waiting now.
    pub fn admitted(&self) -> usize {
        self.capacity - self.admission.available_permits()
    }

    pub fn workers(&self) -> usize {
        self.worker_count
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_queue_refuses_at_once_and_frees_up_afterwards() {
        let pool = Pool::new(1, 1);
        let (release, wait) = mpsc::channel::<()>();
        let blocked = {
            let pool = pool.clone();
            tokio::spawn(async move { pool.run(move || wait.recv().unwrap()).await })
        };
        let queued = {
            let pool = pool.clone();
            tokio::spawn(async move { pool.run(|| 7).await })
        };
        while pool.admitted() < 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(pool.run(|| 1).await, Err(PoolError::Busy(2)));
        release.send(()).unwrap();
        assert_eq!(blocked.await.unwrap(), Ok(()));
        assert_eq!(queued.await.unwrap(), Ok(7));
        assert_eq!(pool.run(|| 3).await, Ok(3));
        assert_eq!(pool.admitted(), 0);
    }

    #[tokio::test]
    async fn a_panicking_job_is_an_error_not_a_crash() {
        let pool = Pool::new(1, 0);
        let result: Result<(), _> = pool.run(|| panic!("boom")).await;
        assert_eq!(result, Err(PoolError::Panicked));
        assert_eq!(pool.run(|| 5).await, Ok(5));
    }
}
