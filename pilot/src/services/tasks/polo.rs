//! The polo reward (`spec/services.md` §7.5): one point plus a bonus growing with the log of
//! the execution minutes, scaled down by time spent idle (unanswered) and staged (queued).

use serde_json::{json, Value};

/// Seconds over which the idle factor grows to its maximum.
const IDLE_WINDOW_S: f64 = 60.0;
/// Seconds over which the staged factor grows to its maximum.
const STAGED_WINDOW_S: f64 = 600.0;
/// Largest idle and staged factors.
const MAX_FACTOR: f64 = 0.3;
/// Smallest efficiency.
const MIN_EFFICIENCY: f64 = 0.4;

/// How a reward came about (the breakdown keys of §7.5).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Reward {
    /// Always 1.
    pub base: f64,
    /// log2(1 + cpu minutes).
    pub cpu_bonus: f64,
    /// Execution minutes.
    pub cpu_minutes: f64,
    /// Penalty for idle time, 0..0.3.
    pub idle_factor: f64,
    /// Penalty for staged time, 0..0.3.
    pub staged_factor: f64,
    /// max(1 − idle − staged, 0.4).
    pub efficiency_multiplier: f64,
    /// (base + bonus) · efficiency.
    pub raw_reward: f64,
    /// The points awarded: raw rounded half up, at least 1.
    pub final_reward: i64,
}

/// The reward for a task with these times (negative times count as 0).
pub fn reward(time_cpu_ms: i64, time_idle_ms: i64, time_staged_ms: i64) -> Reward {
    let cpu_minutes = time_cpu_ms.max(0) as f64 / 60_000.0;
    let cpu_bonus = (1.0 + cpu_minutes).log2();
    let idle_factor =
        (time_idle_ms as f64 / 1000.0 / IDLE_WINDOW_S * MAX_FACTOR).clamp(0.0, MAX_FACTOR);
    let staged_factor =
        (time_staged_ms as f64 / 1000.0 / STAGED_WINDOW_S * MAX_FACTOR).clamp(0.0, MAX_FACTOR);
    let efficiency_multiplier = (1.0 - idle_factor - staged_factor).max(MIN_EFFICIENCY);
    let base = 1.0;
    let raw_reward = (base + cpu_bonus) * efficiency_multiplier;
    let final_reward = ((raw_reward + 0.5).floor() as i64).max(1);
    Reward {
        base,
        cpu_bonus,
        cpu_minutes,
        idle_factor,
        staged_factor,
        efficiency_multiplier,
        raw_reward,
        final_reward,
    }
}

impl Reward {
    /// The breakdown as a JSON object.
    pub fn breakdown(&self) -> Value {
        json!({
            "base": self.base,
            "cpu_bonus": self.cpu_bonus,
            "cpu_minutes": self.cpu_minutes,
            "idle_factor": self.idle_factor,
            "staged_factor": self.staged_factor,
            "efficiency_multiplier": self.efficiency_multiplier,
            "raw_reward": self.raw_reward,
            "final_reward": self.final_reward,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn no_work_no_waiting_is_one_point() {
        let r = reward(0, 0, 0);
        assert_eq!(r.final_reward, 1);
        assert!(close(r.raw_reward, 1.0));
        assert!(close(r.efficiency_multiplier, 1.0));
    }

    #[test]
    fn worked_examples() {
        // 3 cpu minutes: bonus log2(4) = 2; 30 s idle: 0.15; 300 s staged: 0.15; eff 0.7;
        // raw 3 · 0.7 = 2.1 → 2.
        let r = reward(180_000, 30_000, 300_000);
        assert!(close(r.cpu_minutes, 3.0));
        assert!(close(r.cpu_bonus, 2.0));
        assert!(close(r.idle_factor, 0.15));
        assert!(close(r.staged_factor, 0.15));
        assert!(close(r.efficiency_multiplier, 0.7));
        assert!(close(r.raw_reward, 2.1));
        assert_eq!(r.final_reward, 2);
        // 15 cpu minutes: bonus 4, no waiting: raw 5.
        assert_eq!(reward(900_000, 0, 0).final_reward, 5);
        // Long waits clamp at 0.3 each, efficiency floor 0.4: 7 minutes → (1+3)·0.4 = 1.6 → 2.
        let r = reward(420_000, 3_600_000, 36_000_000);
        assert!(close(r.idle_factor, 0.3));
        assert!(close(r.staged_factor, 0.3));
        assert!(close(r.efficiency_multiplier, 0.4));
        assert_eq!(r.final_reward, 2);
        // Rounding half up: 1 cpu minute (bonus 1), idle 15 s (0.075): 2 · 0.925 = 1.85 → 2;
        // idle 45 s (0.225): 2 · 0.775 = 1.55 → 2; idle 60 s: 2 · 0.7 = 1.4 → 1.
        assert_eq!(reward(60_000, 15_000, 0).final_reward, 2);
        assert_eq!(reward(60_000, 45_000, 0).final_reward, 2);
        assert_eq!(reward(60_000, 60_000, 0).final_reward, 1);
        // Negative inputs (a clock step) do not go below the minimum.
        assert_eq!(reward(-5, -5, -5).final_reward, 1);
    }

    #[test]
    fn breakdown_has_the_spec_keys() {
        let b = reward(60_000, 0, 0).breakdown();
        for key in [
            "base",
            "cpu_bonus",
            "cpu_minutes",
            "idle_factor",
            "staged_factor",
            "efficiency_multiplier",
            "raw_reward",
            "final_reward",
        ] {
            assert!(b.get(key).is_some(), "{key}");
        }
        assert_eq!(b["final_reward"], 2);
    }
}
