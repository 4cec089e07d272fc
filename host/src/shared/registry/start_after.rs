//! `start_after` across the whole registry (issue 14: readiness): every name a worker starts
//! after is a registered worker, and no chain of them comes back to where it began.
//!
//! Runs in: the supervisor, once every plugin's init registered its workers (`preload`).

use super::Registry;

/// A `start_after` that cannot be met: the worker that names it, its plugin, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("worker {worker} (plugin {plugin}): {reason}")]
pub struct StartAfterError {
    pub worker: String,
    pub plugin: String,
    pub reason: String,
}

impl Registry {
    /// Checks every `start_after` against the whole registry: each names a registered worker, and
    /// no chain of them comes back to where it began (such workers would never start). Run
    /// once all plugins' inits registered their workers.
    pub fn check_start_after(&self) -> Result<(), StartAfterError> {
        let index: std::collections::HashMap<&str, usize> = self
            .workers
            .iter()
            .enumerate()
            .map(|(i, w)| (w.name.as_str(), i))
            .collect();
        for w in &self.workers {
            for t in &w.start_after {
                if !index.contains_key(t.as_str()) {
                    return Err(StartAfterError {
                        worker: w.name.clone(),
                        plugin: w.plugin.clone(),
                        reason: format!("start_after names worker {t:?}, which no plugin registered"),
                    });
                }
                // issue 15: isolated
                // Readiness is a flag the worker writes in shared memory; an isolated one cannot.
                if self.workers[index[t.as_str()]].isolated {
                    return Err(StartAfterError {
                        worker: w.name.clone(),
                        plugin: w.plugin.clone(),
                        reason: format!(
                            "start_after names worker {t:?}, which is isolated and so cannot report readiness \
                             (it writes no shared memory)"
                        ),
                    });
                }
            }
        }
        // Depth-first, with the path on a stack: 0 unvisited, 1 on the path, 2 done.
        let mut mark = vec![0u8; self.workers.len()];
        for root in 0..self.workers.len() {
            if mark[root] != 0 {
                continue;
            }
            let mut path: Vec<(usize, usize)> = vec![(root, 0)];
            mark[root] = 1;
            while let Some(&mut (at, ref mut next)) = path.last_mut() {
                let Some(t) = self.workers[at].start_after.get(*next) else {
                    mark[at] = 2;
                    path.pop();
                    continue;
                };
                *next += 1;
                let to = index[t.as_str()];
                match mark[to] {
                    0 => {
                        mark[to] = 1;
                        path.push((to, 0));
                    }
                    1 => {
                        let from = path.iter().position(|&(i, _)| i == to).expect("on the path");
                        let cycle: Vec<String> = path[from..]
                            .iter()
                            .chain(std::iter::once(&(to, 0)))
                            .map(|&(i, _)| format!("{} (plugin {})", self.workers[i].name, self.workers[i].plugin))
                            .collect();
                        let first = &self.workers[to];
                        return Err(StartAfterError {
                            worker: first.name.clone(),
                            plugin: first.plugin.clone(),
                            reason: format!(
                                "start_after makes a cycle (each starts after the next), so none of them would start: {}",
                                cycle.join(" -> ")
                            ),
                        });
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::{RegistryError, WorkerSpec};
    use super::*;

    fn after(name: &str, plugin: &str, targets: &[&str]) -> WorkerSpec {
        WorkerSpec {
            plugin: plugin.into(),
            start_after: targets.iter().map(|t| t.to_string()).collect(),
            ..super::super::tests::spec(name)
        }
    }

    // issue 15: isolated
    #[test]
    fn start_after_may_not_name_an_isolated_worker() {
        let mut r = Registry::default();
        r.add_worker(WorkerSpec {
            isolated: true,
            ..after("iso", "p", &[])
        })
        .unwrap();
        r.add_worker(after("b", "q", &["iso"])).unwrap();
        let e = r.check_start_after().unwrap_err();
        assert_eq!((e.worker.as_str(), e.plugin.as_str()), ("b", "q"));
        assert!(e.to_string().contains("\"iso\", which is isolated"), "{e}");
    }

    #[test]
    fn start_after_must_name_registered_workers_without_a_cycle() {
        let mut r = Registry::default();
        r.add_worker(after("a", "p", &[])).unwrap();
        r.add_worker(after("b", "p", &["a"])).unwrap();
        r.add_worker(after("c", "q", &["a", "b"])).unwrap();
        assert_eq!(r.check_start_after(), Ok(()));
        r.add_worker(after("d", "q", &["nobody"])).unwrap();
        let e = r.check_start_after().unwrap_err();
        assert_eq!((e.worker.as_str(), e.plugin.as_str()), ("d", "q"));
        assert!(e.to_string().contains("\"nobody\", which no plugin registered"), "{e}");

        let mut r = Registry::default();
        r.add_worker(after("x", "p", &[])).unwrap();
        r.add_worker(after("a", "p", &["c", "x"])).unwrap();
        r.add_worker(after("b", "q", &["a"])).unwrap();
        r.add_worker(after("c", "p", &["b"])).unwrap();
        let e = r.check_start_after().unwrap_err().to_string();
        assert!(
            e.contains("a (plugin p) -> c (plugin p) -> b (plugin q) -> a (plugin p)"),
            "{e}"
        );
        // A worker cannot wait for itself, nor for more than the ABI carries.
        let mut r = Registry::default();
        assert!(matches!(
            r.add_worker(after("s", "p", &["s"])),
            Err(RegistryError::Invalid(_))
        ));
        let many = ["a", "b", "c", "d", "e"];
        assert!(matches!(
            r.add_worker(after("m", "p", &many)),
            Err(RegistryError::Invalid(_))
        ));
    }
}
