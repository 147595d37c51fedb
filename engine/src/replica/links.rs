//! Outbound peer links with reconnect backoff.

/// Outbound peer connections with reconnect backoff, as a TCP transport has them. Requests
/// (appends, vote requests) need the sender's own connection to the peer; responses go back on
/// the connection the request came in on. After a peer stops answering, the connection is
/// re-established only at exponentially spaced attempts, so a node that comes back can go a
/// while without hearing from the leader while its own requests still get answers.
#[derive(Debug, Clone, Copy)]
pub struct LinkConfig {
    pub timeout_ms: u64,
    pub backoff_min_ms: u64,
    pub backoff_max_ms: u64,
}

impl Default for LinkConfig {
    fn default() -> Self {
        LinkConfig {
            timeout_ms: 300,
            backoff_min_ms: 100,
            backoff_max_ms: 2_000,
        }
    }
}

#[derive(Debug, Clone)]
pub(super) struct Link {
    up: bool,
    unanswered_since_ms: Option<u64>,
    next_attempt_ms: u64,
    backoff_ms: u64,
}

impl Link {
    pub(super) fn new(cfg: &LinkConfig) -> Self {
        Link {
            up: true,
            unanswered_since_ms: None,
            next_attempt_ms: 0,
            backoff_ms: cfg.backoff_min_ms,
        }
    }

    /// Whether a request may go out now.
    pub(super) fn allow(&mut self, now_ms: u64, cfg: &LinkConfig) -> bool {
        if self.up {
            match self.unanswered_since_ms {
                Some(t) if now_ms.saturating_sub(t) > cfg.timeout_ms => {
                    self.up = false;
                    self.next_attempt_ms = now_ms + self.backoff_ms;
                    self.backoff_ms = (self.backoff_ms * 2).min(cfg.backoff_max_ms);
                    false
                }
                Some(_) => true,
                None => {
                    self.unanswered_since_ms = Some(now_ms);
                    true
                }
            }
        } else if now_ms >= self.next_attempt_ms {
            self.next_attempt_ms = now_ms + self.backoff_ms;
            self.backoff_ms = (self.backoff_ms * 2).min(cfg.backoff_max_ms);
            true // one reconnect attempt
        } else {
            false
        }
    }

    pub(super) fn answered(&mut self, cfg: &LinkConfig) {
        self.up = true;
        self.unanswered_since_ms = None;
        self.backoff_ms = cfg.backoff_min_ms;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_goes_down_after_timeout_and_backs_off_exponentially() {
        let cfg = LinkConfig {
            timeout_ms: 300,
            backoff_min_ms: 100,
            backoff_max_ms: 400,
        };
        let mut l = Link::new(&cfg);
        assert!(l.allow(0, &cfg));
        assert!(l.allow(200, &cfg), "still within the timeout");
        assert!(!l.allow(301, &cfg), "no answer for too long: down");
        assert!(
            !l.allow(350, &cfg),
            "waiting for the first reconnect attempt"
        );
        assert!(l.allow(401, &cfg), "first attempt after 100 ms");
        assert!(!l.allow(500, &cfg));
        assert!(l.allow(601, &cfg), "second attempt after 200 ms");
        assert!(l.allow(1001, &cfg), "backoff capped at 400 ms");
        l.answered(&cfg);
        assert!(l.allow(1002, &cfg), "an answer brings the link back up");
    }

    /// Reconnect attempts are spaced by a backoff that doubles after every attempt up to the
    /// cap: from 100 ms, gaps of 100, 200, 400 and 800 ms, then 1000 ms (the cap) each time.
    /// (The first two gaps are set when the link goes down; the third is the first that a
    /// reconnect attempt doubles.)
    #[test]
    fn reconnect_attempts_double_their_spacing_up_to_the_cap() {
        let cfg = LinkConfig {
            timeout_ms: 300,
            backoff_min_ms: 100,
            backoff_max_ms: 1_000,
        };
        let mut l = Link::new(&cfg);
        assert!(l.allow(0, &cfg));
        assert!(!l.allow(301, &cfg), "no answer for too long: down");
        let mut last = 301;
        for gap in [100, 200, 400, 800, 1_000, 1_000] {
            assert!(
                !l.allow(last + gap - 1, &cfg),
                "no attempt sooner than {gap} ms after the last"
            );
            last += gap;
            assert!(l.allow(last, &cfg), "an attempt {gap} ms after the last");
        }
    }
}
