//! [`BridgeSides`]: the two end sensors' states in, "a vehicle came on" and "it left by this end"
//! out.
//!
//! A pure state machine: no I/O, no clock; each sensor change comes with the time it was read
//! (any `Copy` time type: the driver's `Instant`, a test's integer), and the events carry it.
//!
//! # Rules (the geometry is in [`crate::presence_ascii`])
//!
//! The two sensors together cover the deck, so the bridge is empty exactly when both are clear.
//! - **On**: the first sensor to become occupied while both were clear brings a vehicle on:
//!   [`PresenceEvent::VehicleOn`], with that end (a vehicle drives on by the entry; one coming
//!   the wrong way, by the exit).
//! - **Off**: the last sensor to clear, leaving both clear, is the end the vehicle left by:
//!   [`PresenceEvent::VehicleOff`]. A vehicle that crossed leaves by the exit; one that backed
//!   off leaves by the entry (the lane records no crossing for it).
//! - A state that a sensor already had (a module's keep-alive, a repeated line) changes nothing.
//! - Two vehicles nose to tail keep a sensor occupied between them: to this machine they are
//!   one presence (the lane splits them by their plates). A vehicle wholly between the sensors'
//!   areas would read as gone: the sensors must cover the deck without a gap.

use crate::presence_ascii::{PresenceLine, SensorEnd};
use std::collections::VecDeque;

/// What the sensors say about the bridge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PresenceEvent<T> {
    /// The bridge was empty and a vehicle came on, by `by`.
    VehicleOn { at: T, by: SensorEnd },
    /// The bridge is empty again; the vehicle left by `by`.
    VehicleOff { at: T, by: SensorEnd },
}

/// The two end sensors' states and the events they make (see the module header).
#[derive(Debug, Clone)]
pub struct BridgeSides<T> {
    entry: bool,
    exit: bool,
    events: VecDeque<PresenceEvent<T>>,
}

impl<T> Default for BridgeSides<T> {
    /// Both sensors clear: nothing on the bridge.
    fn default() -> Self {
        Self {
            entry: false,
            exit: false,
            events: VecDeque::new(),
        }
    }
}

impl<T: Copy> BridgeSides<T> {
    pub fn new() -> Self {
        Self::default()
    }

    /// A sensor's state, read at `at`.
    pub fn handle_line(&mut self, at: T, line: PresenceLine) {
        let was_on = self.on_bridge();
        let state = match line.sensor {
            SensorEnd::Entry => &mut self.entry,
            SensorEnd::Exit => &mut self.exit,
        };
        if *state == line.occupied {
            return;
        }
        *state = line.occupied;
        match (was_on, self.on_bridge()) {
            (false, true) => self.events.push_back(PresenceEvent::VehicleOn {
                at,
                by: line.sensor,
            }),
            (true, false) => self.events.push_back(PresenceEvent::VehicleOff {
                at,
                by: line.sensor,
            }),
            _ => {}
        }
    }

    /// Whether a sensor is occupied now.
    pub fn on_bridge(&self) -> bool {
        self.entry || self.exit
    }

    /// The next event, oldest first.
    pub fn poll(&mut self) -> Option<PresenceEvent<T>> {
        self.events.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use SensorEnd::{Entry, Exit};

    fn feed(lines: &[(u32, SensorEnd, bool)]) -> Vec<PresenceEvent<u32>> {
        let mut sides = BridgeSides::new();
        let mut out = Vec::new();
        for &(at, sensor, occupied) in lines {
            sides.handle_line(at, PresenceLine { sensor, occupied });
            out.extend(std::iter::from_fn(|| sides.poll()));
        }
        out
    }

    #[test]
    fn a_vehicle_that_crosses_comes_on_by_the_entry_and_leaves_by_the_exit() {
        let events = feed(&[
            (1, Entry, true),
            (2, Exit, true),
            (3, Entry, false),
            (4, Exit, false),
        ]);
        assert_eq!(
            events,
            [
                PresenceEvent::VehicleOn { at: 1, by: Entry },
                PresenceEvent::VehicleOff { at: 4, by: Exit }
            ]
        );
    }

    #[test]
    fn a_vehicle_that_backs_off_leaves_by_the_entry() {
        // On, up to the exit half, then back the way it came.
        let events = feed(&[
            (1, Entry, true),
            (2, Exit, true),
            (3, Exit, false),
            (4, Entry, false),
        ]);
        assert_eq!(
            events,
            [
                PresenceEvent::VehicleOn { at: 1, by: Entry },
                PresenceEvent::VehicleOff { at: 4, by: Entry }
            ]
        );
        // A short one that never reached the exit half.
        let events = feed(&[(1, Entry, true), (5, Entry, false)]);
        assert_eq!(
            events.last(),
            Some(&PresenceEvent::VehicleOff { at: 5, by: Entry })
        );
    }

    #[test]
    fn repeated_states_change_nothing() {
        let events = feed(&[
            (1, Entry, false),
            (2, Entry, true),
            (3, Entry, true),
            (4, Exit, false),
            (5, Exit, true),
            (6, Entry, false),
            (7, Entry, false),
            (8, Exit, false),
            (9, Exit, false),
        ]);
        assert_eq!(
            events,
            [
                PresenceEvent::VehicleOn { at: 2, by: Entry },
                PresenceEvent::VehicleOff { at: 8, by: Exit }
            ]
        );
    }

    #[test]
    fn vehicles_nose_to_tail_are_one_presence_and_a_wrong_way_one_comes_on_by_the_exit() {
        let events = feed(&[
            (1, Entry, true),
            (2, Exit, true),
            // The second vehicle is on the entry half before the first leaves the exit half.
            (3, Entry, true),
            (4, Exit, false),
            (5, Exit, true),
            (6, Entry, false),
            (7, Exit, false),
            // Wrong way.
            (10, Exit, true),
            (11, Entry, true),
            (12, Exit, false),
            (13, Entry, false),
        ]);
        assert_eq!(
            events,
            [
                PresenceEvent::VehicleOn { at: 1, by: Entry },
                PresenceEvent::VehicleOff { at: 7, by: Exit },
                PresenceEvent::VehicleOn { at: 10, by: Exit },
                PresenceEvent::VehicleOff { at: 13, by: Entry },
            ]
        );
    }

    proptest! {
        /// Against a naive model: events alternate on/off starting with on, an on is always
        /// made by an occupied line and an off by a clear one, and `on_bridge` is "either
        /// sensor occupied".
        #[test]
        fn events_alternate_and_follow_the_sensors(
            lines in proptest::collection::vec((any::<bool>(), any::<bool>()), 0..60)
        ) {
            let mut sides = BridgeSides::new();
            let (mut entry, mut exit) = (false, false);
            let mut on = false;
            for (i, (is_entry, occupied)) in lines.into_iter().enumerate() {
                let sensor = if is_entry { Entry } else { Exit };
                sides.handle_line(i, PresenceLine { sensor, occupied });
                if is_entry { entry = occupied } else { exit = occupied }
                while let Some(e) = sides.poll() {
                    match e {
                        PresenceEvent::VehicleOn { at, by } => {
                            prop_assert!(!on && at == i && by == sensor && occupied);
                            on = true;
                        }
                        PresenceEvent::VehicleOff { at, by } => {
                            prop_assert!(on && at == i && by == sensor && !occupied);
                            on = false;
                        }
                    }
                }
                prop_assert_eq!(on, entry || exit);
                prop_assert_eq!(sides.on_bridge(), entry || exit);
            }
        }
    }
}
