//! The scheduler's timetable: a min-heap of due times, with re-arming and disarming.
//!
//! Disarming does not search the heap: the map `armed` says which time is current for each
//! job, and heap entries that disagree with it are dropped when they reach the top.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use joblet_ipc_proto::job::JobId;

#[derive(Debug, Default)]
pub struct DueQueue {
    heap: BinaryHeap<Reverse<(u64, JobId)>>,
    armed: HashMap<JobId, u64>,
}

impl DueQueue {
    /// Arms `job` for `due_ns`, replacing any time it had.
    pub fn arm(&mut self, job: JobId, due_ns: u64) {
        if self.armed.insert(job.clone(), due_ns) != Some(due_ns) {
            self.heap.push(Reverse((due_ns, job)));
        }
    }

    /// Forgets `job`; true if it was armed.
    pub fn disarm(&mut self, job: &JobId) -> bool {
        self.armed.remove(job).is_some()
    }

    pub fn len(&self) -> usize {
        self.armed.len()
    }

    pub fn is_empty(&self) -> bool {
        self.armed.is_empty()
    }

    /// The earliest due time, if any job is armed.
    pub fn next_due(&mut self) -> Option<u64> {
        self.drop_stale();
        self.heap.peek().map(|Reverse((due, _))| *due)
    }

    /// Removes and returns every job due at `now_ns`, earliest first (ties in id order).
    pub fn pop_due(&mut self, now_ns: u64) -> Vec<JobId> {
        let mut due = Vec::new();
        loop {
            self.drop_stale();
            match self.heap.peek() {
                Some(Reverse((at, _))) if *at <= now_ns => {}
                _ => return due,
            }
            if let Some(Reverse((_, job))) = self.heap.pop() {
                self.armed.remove(&job);
                due.push(job);
            }
        }
    }

    fn drop_stale(&mut self) {
        while let Some(Reverse((at, job))) = self.heap.peek() {
            if self.armed.get(job) == Some(at) {
                return;
            }
            self.heap.pop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> JobId {
        JobId::parse(&format!("0b7c1a2e-4f3d-4e8a-9c61-2d5e7f9a1b{n:02x}")).unwrap()
    }

    #[test]
    fn jobs_come_out_in_due_order() {
        let mut q = DueQueue::default();
        q.arm(id(3), 300);
        q.arm(id(1), 100);
        q.arm(id(4), 100);
        q.arm(id(2), 200);
        assert_eq!(q.next_due(), Some(100));
        assert_eq!(q.pop_due(99), Vec::<JobId>::new());
        assert_eq!(q.pop_due(100), vec![id(1), id(4)], "ties in id order");
        assert_eq!(q.pop_due(1_000), vec![id(2), id(3)]);
        assert!(q.is_empty());
        assert_eq!(q.next_due(), None);
    }

    #[test]
    fn disarmed_jobs_never_come_out() {
        let mut q = DueQueue::default();
        q.arm(id(1), 100);
        q.arm(id(2), 200);
        assert!(q.disarm(&id(1)));
        assert!(!q.disarm(&id(1)));
        assert_eq!(q.next_due(), Some(200));
        assert_eq!(q.pop_due(1_000), vec![id(2)]);
    }

    #[test]
    fn re_arming_moves_a_job_and_keeps_one_entry() {
        let mut q = DueQueue::default();
        q.arm(id(1), 100);
        q.arm(id(1), 500);
        q.arm(id(2), 300);
        assert_eq!(q.len(), 2);
        assert_eq!(q.pop_due(400), vec![id(2)], "the old time of job 1 is gone");
        q.arm(id(1), 500);
        assert_eq!(
            q.pop_due(500),
            vec![id(1)],
            "armed twice at the same time, out once"
        );
        assert_eq!(q.pop_due(u64::MAX), Vec::<JobId>::new());
        // Disarmed, then armed again at its old time: the old entry counts once.
        q.arm(id(3), 10);
        q.disarm(&id(3));
        q.arm(id(3), 10);
        assert_eq!(q.pop_due(10), vec![id(3)]);
        assert!(q.is_empty());
    }
}
