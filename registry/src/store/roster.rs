//! One service's instances: found by address, listed in the order they
//! first registered (answers list them so, as the original does), and
//! removed from anywhere in that order in logarithmic time.
//!
//! An `IndexMap` keeps the order too, but removing from it while keeping
//! the order shifts every later entry and rewrites its index: taking the
//! 10,000 instances of one service away in the order they came (a sweep
//! evicting a rack of hosts, a fleet deregistering) cost 200 ms under the
//! table's lock, growing with the square of the count up to the
//! 1,000,000 instances `--max-instances` allows.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};

#[derive(Debug)]
pub struct Roster<T> {
    /// Each value by the place its address took when it first came.
    in_order: BTreeMap<u64, T>,
    place: HashMap<String, u64>,
    /// The place the next new address takes.
    next: u64,
}

impl<T> Default for Roster<T> {
    fn default() -> Self {
        Roster {
            in_order: BTreeMap::new(),
            place: HashMap::new(),
            next: 0,
        }
    }
}

impl<T> Roster<T> {
    pub fn get(&self, addr: &str) -> Option<&T> {
        self.in_order.get(self.place.get(addr)?)
    }

    pub fn get_mut(&mut self, addr: &str) -> Option<&mut T> {
        self.in_order.get_mut(self.place.get(addr)?)
    }

    /// Lists `value` at `addr`: after every other if the address is new,
    /// in the place of the one it replaces if not.
    pub fn insert(&mut self, addr: String, value: T) {
        let place = match self.place.entry(addr) {
            Entry::Occupied(known) => *known.get(),
            Entry::Vacant(new) => {
                let place = self.next;
                self.next += 1;
                *new.insert(place)
            }
        };
        self.in_order.insert(place, value);
    }

    pub fn remove(&mut self, addr: &str) -> Option<T> {
        let place = self.place.remove(addr)?;
        self.in_order.remove(&place)
    }

    /// In the order their addresses first came.
    pub fn values(&self) -> impl Iterator<Item = &T> {
        self.in_order.values()
    }

    pub fn is_empty(&self) -> bool {
        self.in_order.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(roster: &Roster<&'static str>) -> Vec<&'static str> {
        roster.values().copied().collect()
    }

    #[test]
    fn instances_stay_in_the_order_they_first_came() {
        let mut roster = Roster::default();
        for addr in ["a", "b", "c", "d"] {
            roster.insert(addr.to_owned(), addr);
        }
        roster.insert("b".to_owned(), "b again");
        assert_eq!(listed(&roster), ["a", "b again", "c", "d"]);
        assert_eq!(roster.remove("c"), Some("c"));
        assert_eq!(roster.remove("c"), None);
        assert_eq!(roster.remove("a"), Some("a"));
        assert_eq!(listed(&roster), ["b again", "d"]);
        // One that left and came back is the newest.
        roster.insert("a".to_owned(), "a back");
        assert_eq!(listed(&roster), ["b again", "d", "a back"]);
        *roster.get_mut("d").unwrap() = "d changed";
        assert_eq!(roster.get("d"), Some(&"d changed"));
        assert_eq!(roster.get("c"), None);
        for addr in ["b", "d", "a"] {
            assert!(roster.remove(addr).is_some());
        }
        assert!(roster.is_empty());
    }
}
