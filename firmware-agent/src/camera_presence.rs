//! Camera presence: vehicles framed by what moves in the lane camera's picture
//! (`[camera] presence = "motion"`), for a lane without presence sensors whose weighbridge
//! should only weigh.
//!
//! A pure state machine (no clock, no I/O): the camera's vision worker measures each frame's motion
//! (`bcp_anpr::motion`: the fraction of the frame's pixels that changed since the previous
//! frame) and the agent hands it here with the time it got it and the frame's capture time
//! ([`CameraPresence::handle_frame`]), and the time now when nothing else happened
//! ([`CameraPresence::handle_timeout`], due at [`CameraPresence::poll_timeout`]). What it
//! decides comes out of [`CameraPresence::poll`] as [`CameraPresenceEvent`]s, which the agent
//! gives the lane correlator (`handle_vehicle_on`, `handle_vehicle_off`: the end it left by is
//! not known).
//!
//! ## Rules ([`CameraPresenceRules`], the `[camera]` `motion_*` keys)
//! - **A frame moves** while the lane is empty when its motion is above `on_fraction`; while a
//!   vehicle is on, when its motion is not below `off_fraction` (`off_fraction <=
//!   on_fraction`: a vehicle that creeps still counts as moving).
//! - **A vehicle comes on** when `on_frames` frames in a row move. Its `arrived_at` is the
//!   capture time of the first of them. A flicker (fewer moving frames in a row: a bird, a
//!   headlight's reflection, a person walking past) is no vehicle.
//! - **It has left** when no frame has moved for `quiet_ms`: decided by the first quiet frame
//!   captured at least `quiet_ms` after the last moving frame; or, when the camera goes
//!   silent (one that only uploads frames with motion in them), by
//!   [`handle_timeout`](CameraPresence::handle_timeout) once no frame has come for `quiet_ms`
//!   and the last moving frame is `quiet_ms` old. (While frames keep coming, their capture
//!   times alone decide: a camera whose frames wait behind recognition is not cut short by
//!   the clock; nor is one whose frames each take longer than `quiet_ms` to read: while the
//!   camera says frames it already captured wait behind the one handed over, it has not gone
//!   silent, and the clock waits for them, up to [`STALLED_CAMERA`].) Its `left_at` is the
//!   capture time of the last moving frame (the frame in
//!   which it drove out of the picture).
//! - **A vehicle that stops on the bridge is still one vehicle** as long as it stops for less
//!   than `quiet_ms`: weighing takes a stop, so `quiet_ms` must be longer than the longest
//!   stop on the bridge (and shorter than the gap between two vehicles, else two vehicles close
//!   together are framed as one). A stop longer than `quiet_ms` frames the vehicle as leaving
//!   at its last moving frame and a new one coming on when it drives off.
//! - **The camera must see the vehicle come on.** The weighbridge still gives the stable
//!   weight, and a stable weight with no vehicle on opens a crossing of its own
//!   (`arrival_not_seen`, see `crate::lane`). A camera that lags behind recognition may say a
//!   vehicle came on after its weight reached the lane: an arrival from before the weight is
//!   that crossing's (the lane adopts it); one after it is another vehicle. So the camera
//!   must see the vehicle as it drives on, before it is weighed.
//! - **Frames go forward in time.** A frame captured at or before the time of a decision
//!   already made (a vehicle's `left_at`, or a timeout) does not move anything.

use chrono::{DateTime, TimeDelta, Utc};
use std::collections::VecDeque;

/// How long the clock waits for frames the camera says it captured and has not yet handed
/// over before it takes the camera for stalled (and the vehicle on for gone).
pub const STALLED_CAMERA: TimeDelta = TimeDelta::seconds(30);

/// The thresholds of camera presence (see the module header).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CameraPresenceRules {
    /// While the lane is empty, a frame moves when its motion fraction is above this.
    pub on_fraction: f64,
    /// This many moving frames in a row bring a vehicle on.
    pub on_frames: u32,
    /// While a vehicle is on, a frame moves unless its motion fraction is below this.
    pub off_fraction: f64,
    /// A vehicle has left when no frame moved for this long.
    pub quiet: TimeDelta,
}

/// What camera presence decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CameraPresenceEvent {
    /// A vehicle came on; `at` is its first moving frame's capture time.
    VehicleOn { at: DateTime<Utc> },
    /// The vehicle left; `at` is its last moving frame's capture time.
    VehicleOff { at: DateTime<Utc> },
}

#[derive(Debug, Clone, Copy)]
enum State {
    /// No vehicle; `moving` frames in a row moved, the first at `since`.
    Empty {
        moving: u32,
        since: Option<DateTime<Utc>>,
    },
    /// A vehicle is on; its last moving frame was captured at `last_moving`.
    Occupied { last_moving: DateTime<Utc> },
}

/// The camera presence state machine (see the module header).
#[derive(Debug)]
pub struct CameraPresence {
    rules: CameraPresenceRules,
    state: State,
    /// Frames captured at or before this are too old to move anything.
    decided_at: Option<DateTime<Utc>>,
    /// When the last frame came (the caller's clock).
    last_frame_came: Option<DateTime<Utc>>,
    /// The camera had captured more frames, not yet handed over, when the last one came.
    frames_waiting: bool,
    out: VecDeque<CameraPresenceEvent>,
}

impl CameraPresence {
    /// An empty lane.
    pub fn new(rules: CameraPresenceRules) -> Self {
        Self {
            rules,
            state: State::Empty {
                moving: 0,
                since: None,
            },
            decided_at: None,
            last_frame_came: None,
            frames_waiting: false,
            out: VecDeque::new(),
        }
    }

    /// Whether a vehicle is on, as far as the camera can tell.
    pub fn occupied(&self) -> bool {
        matches!(self.state, State::Occupied { .. })
    }

    /// A frame captured at `at` whose motion fraction was `motion`, handed over at `now`, with
    /// `frames_waiting` frames captured after it still to be handed over.
    pub fn handle_frame(
        &mut self,
        now: DateTime<Utc>,
        at: DateTime<Utc>,
        motion: f64,
        frames_waiting: usize,
    ) {
        self.last_frame_came = Some(now);
        self.frames_waiting = frames_waiting > 0;
        if self.decided_at.is_some_and(|d| at <= d) {
            return;
        }
        let r = self.rules;
        match self.state {
            State::Empty { moving, since } => {
                if motion > r.on_fraction {
                    let since = since.unwrap_or(at);
                    let moving = moving + 1;
                    if moving >= r.on_frames {
                        self.state = State::Occupied { last_moving: at };
                        self.out
                            .push_back(CameraPresenceEvent::VehicleOn { at: since });
                    } else {
                        self.state = State::Empty {
                            moving,
                            since: Some(since),
                        };
                    }
                } else {
                    self.state = State::Empty {
                        moving: 0,
                        since: None,
                    };
                }
            }
            State::Occupied { last_moving } => {
                if motion >= r.off_fraction {
                    self.state = State::Occupied {
                        last_moving: last_moving.max(at),
                    };
                } else if at - last_moving >= r.quiet {
                    self.leave(at, last_moving);
                }
            }
        }
    }

    /// No frame came up to `now`: the vehicle on has left if no frame came for `quiet_ms` (for
    /// [`STALLED_CAMERA`] while frames wait) and its last moving frame is `quiet_ms` old.
    pub fn handle_timeout(&mut self, now: DateTime<Utc>) {
        if let Some(due) = self.poll_timeout() {
            if now >= due {
                if let State::Occupied { last_moving } = self.state {
                    self.leave(now, last_moving);
                }
            }
        }
    }

    /// When a vehicle on will have left if no frame comes before then.
    pub fn poll_timeout(&self) -> Option<DateTime<Utc>> {
        match self.state {
            State::Occupied { last_moving } => {
                let silence = match self.frames_waiting {
                    true => STALLED_CAMERA.max(self.rules.quiet),
                    false => self.rules.quiet,
                };
                let moved = last_moving + self.rules.quiet;
                Some(
                    self.last_frame_came
                        .map_or(moved, |c| moved.max(c + silence)),
                )
            }
            State::Empty { .. } => None,
        }
    }

    /// The vehicle left at `last_moving`, decided at `decided` (see the rules).
    fn leave(&mut self, decided: DateTime<Utc>, last_moving: DateTime<Utc>) {
        self.state = State::Empty {
            moving: 0,
            since: None,
        };
        self.decided_at = Some(decided);
        self.out
            .push_back(CameraPresenceEvent::VehicleOff { at: last_moving });
    }

    /// The next decision, oldest first.
    pub fn poll(&mut self) -> Option<CameraPresenceEvent> {
        self.out.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use CameraPresenceEvent::{VehicleOff, VehicleOn};

    fn rules() -> CameraPresenceRules {
        CameraPresenceRules {
            on_fraction: 0.05,
            on_frames: 2,
            off_fraction: 0.02,
            quiet: TimeDelta::milliseconds(2000),
        }
    }

    fn t(ms: i64) -> DateTime<Utc> {
        DateTime::<Utc>::UNIX_EPOCH + TimeDelta::milliseconds(1_700_000_000_000 + ms)
    }

    /// Feeds `(ms, motion)` frames; returns every decision.
    fn run(p: &mut CameraPresence, frames: &[(i64, f64)]) -> Vec<CameraPresenceEvent> {
        let mut out = Vec::new();
        for &(ms, motion) in frames {
            // Handed over 100 ms after capture.
            p.handle_frame(t(ms + 100), t(ms), motion, 0);
            while let Some(e) = p.poll() {
                out.push(e);
            }
        }
        out
    }

    /// 4 frames a second from `from` to `to` (exclusive) with `motion`.
    fn frames(from: i64, to: i64, motion: f64) -> Vec<(i64, f64)> {
        (from..to).step_by(250).map(|ms| (ms, motion)).collect()
    }

    #[test]
    fn a_flicker_of_one_frame_is_no_vehicle() {
        let mut p = CameraPresence::new(rules());
        let mut f = frames(0, 1000, 0.0);
        f.push((1000, 0.5));
        f.extend(frames(1250, 5000, 0.0));
        assert_eq!(run(&mut p, &f), []);
        assert!(!p.occupied());
    }

    #[test]
    fn a_vehicle_comes_on_at_its_first_moving_frame_and_leaves_at_its_last() {
        let mut p = CameraPresence::new(rules());
        let mut f = frames(0, 1000, 0.0);
        f.extend(frames(1000, 3000, 0.3));
        f.extend(frames(3000, 6000, 0.0));
        assert_eq!(
            run(&mut p, &f),
            [VehicleOn { at: t(1000) }, VehicleOff { at: t(2750) }]
        );
    }

    #[test]
    fn it_leaves_only_after_quiet_ms_without_motion() {
        let mut p = CameraPresence::new(rules());
        let mut f = frames(0, 1000, 0.3);
        f.extend(frames(1000, 2750, 0.0));
        assert_eq!(
            run(&mut p, &f),
            [VehicleOn { at: t(0) }],
            "750 + 1750 < 2000 ms"
        );
        assert!(p.occupied());
        assert_eq!(
            p.poll_timeout(),
            Some(t(4600)),
            "silent for 2 s after the last frame came (2500 ms, handed over at 2600)"
        );
        assert_eq!(run(&mut p, &[(2750, 0.0)]), [VehicleOff { at: t(750) }]);
    }

    #[test]
    fn a_vehicle_that_stops_for_less_than_quiet_ms_and_moves_again_is_one_vehicle() {
        let mut p = CameraPresence::new(rules());
        let mut f = frames(0, 1000, 0.3); // drives on
        f.extend(frames(1000, 2500, 0.0)); // stops 1.5 s to be weighed
        f.extend(frames(2500, 3500, 0.3)); // drives off
        f.extend(frames(3500, 7000, 0.0));
        assert_eq!(
            run(&mut p, &f),
            [VehicleOn { at: t(0) }, VehicleOff { at: t(3250) }]
        );
    }

    #[test]
    fn a_stop_longer_than_quiet_ms_frames_two_vehicles() {
        let mut p = CameraPresence::new(rules());
        let mut f = frames(0, 1000, 0.3);
        f.extend(frames(1000, 4000, 0.0));
        f.extend(frames(4000, 5000, 0.3));
        f.extend(frames(5000, 8000, 0.0));
        assert_eq!(
            run(&mut p, &f),
            [
                VehicleOn { at: t(0) },
                VehicleOff { at: t(750) },
                VehicleOn { at: t(4000) },
                VehicleOff { at: t(4750) },
            ]
        );
    }

    #[test]
    fn motion_between_the_thresholds_keeps_a_vehicle_on_but_brings_none_on() {
        let mut p = CameraPresence::new(rules());
        assert_eq!(
            run(&mut p, &frames(0, 3000, 0.03)),
            [],
            "creeping is no arrival"
        );
        let mut f = frames(3000, 3500, 0.3);
        f.extend(frames(3500, 8000, 0.03));
        assert_eq!(run(&mut p, &f), [VehicleOn { at: t(3000) }]);
        assert!(p.occupied(), "a creeping vehicle stays on");
    }

    #[test]
    fn moving_frames_must_follow_each_other() {
        let mut p = CameraPresence::new(rules());
        let f = [(0, 0.3), (250, 0.0), (500, 0.3), (750, 0.0), (1000, 0.3)];
        assert_eq!(run(&mut p, &f), []);
    }

    #[test]
    fn a_silent_camera_closes_the_vehicle_by_timeout_and_older_frames_then_move_nothing() {
        let mut p = CameraPresence::new(rules());
        assert_eq!(run(&mut p, &frames(0, 1000, 0.3)), [VehicleOn { at: t(0) }]);
        assert_eq!(
            p.poll_timeout(),
            Some(t(2850)),
            "the last frame came at 850 ms"
        );
        p.handle_timeout(t(2800));
        assert_eq!(p.poll(), None, "not silent long enough");
        p.handle_timeout(t(2850));
        assert_eq!(p.poll(), Some(VehicleOff { at: t(750) }));
        assert_eq!(p.poll_timeout(), None);
        assert_eq!(
            run(&mut p, &[(2500, 0.3), (2600, 0.3)]),
            [],
            "captured before the decision"
        );
        assert_eq!(
            run(&mut p, &[(3000, 0.3), (3250, 0.3)]),
            [VehicleOn { at: t(3000) }]
        );
    }

    #[test]
    fn frames_that_keep_coming_late_are_not_cut_short_by_the_clock() {
        let mut p = CameraPresence::new(rules());
        // Recognition is 5 s behind: each frame is handed over 5 s after it was captured.
        for ms in (0..3000).step_by(250) {
            p.handle_frame(t(ms + 5000), t(ms), 0.3, 0);
            p.handle_timeout(t(ms + 5000));
        }
        assert_eq!(p.poll(), Some(VehicleOn { at: t(0) }));
        assert_eq!(p.poll(), None, "still moving, however late");
        assert!(p.occupied());
    }

    #[test]
    fn frames_slower_to_read_than_the_quiet_time_are_waited_for_while_more_wait() {
        let mut p = CameraPresence::new(rules());
        // Each frame takes 2.5 s to read (longer than the 2 s quiet time); the camera says
        // more frames wait behind each one.
        let mut now = 0;
        for ms in (0..2000).step_by(250) {
            now += 2_500;
            p.handle_timeout(t(now - 1));
            p.handle_frame(t(now), t(ms), 0.3, 3);
        }
        assert_eq!(p.poll(), Some(VehicleOn { at: t(0) }));
        assert_eq!(
            p.poll(),
            None,
            "not cut short while its frames wait to be read"
        );
        assert_eq!(p.poll_timeout(), Some(t(now) + STALLED_CAMERA));
        // The last one: none wait behind it, and the camera goes silent.
        p.handle_frame(t(now + 2_500), t(2_000), 0.3, 0);
        assert_eq!(p.poll_timeout(), Some(t(now + 4_500)));
        p.handle_timeout(t(now + 4_500));
        assert_eq!(p.poll(), Some(VehicleOff { at: t(2_000) }));
    }

    #[test]
    fn a_camera_that_stalls_with_frames_waiting_closes_the_vehicle_at_last() {
        let mut p = CameraPresence::new(rules());
        p.handle_frame(t(100), t(0), 0.3, 5);
        p.handle_frame(t(350), t(250), 0.3, 5);
        assert_eq!(p.poll(), Some(VehicleOn { at: t(0) }));
        p.handle_timeout(t(350) + STALLED_CAMERA - TimeDelta::milliseconds(1));
        assert_eq!(p.poll(), None);
        p.handle_timeout(t(350) + STALLED_CAMERA);
        assert_eq!(p.poll(), Some(VehicleOff { at: t(250) }));
    }
}
