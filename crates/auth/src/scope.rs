//! Scopes: what a token allows. `admin` allows everything.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::AuthError;

/// One permission a token can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Scope {
    /// Record commands (the `Ledger` service).
    EventsWrite,
    /// Query standing (the `Standing` service).
    StandingRead,
    /// Read the history (the `EventLog` service), without personal data.
    LogRead,
    /// Read personal data (names, contact points, free text) where an API offers it.
    PiiRead,
    /// Everything, including erasing a customer.
    Admin,
}

impl Scope {
    /// Every scope, in a fixed order.
    pub const ALL: [Scope; 5] =
        [Scope::EventsWrite, Scope::StandingRead, Scope::LogRead, Scope::PiiRead, Scope::Admin];

    /// The scope's name in token files and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::EventsWrite => "events:write",
            Scope::StandingRead => "standing:read",
            Scope::LogRead => "log:read",
            Scope::PiiRead => "pii:read",
            Scope::Admin => "admin",
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scope {
    type Err = AuthError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        Scope::ALL
            .into_iter()
            .find(|scope| scope.as_str() == value)
            .ok_or_else(|| AuthError::UnknownScope(value.chars().take(64).collect()))
    }
}

impl TryFrom<String> for Scope {
    type Error = AuthError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        value.parse()
    }
}

impl From<Scope> for String {
    fn from(scope: Scope) -> Self {
        scope.as_str().to_owned()
    }
}

/// A set of scopes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ScopeSet(u8);

impl ScopeSet {
    /// Every scope (what a service with authentication turned off grants).
    pub fn all() -> Self {
        Scope::ALL.into_iter().collect()
    }

    /// True when the set holds `scope` or `admin`.
    pub fn allows(self, scope: Scope) -> bool {
        self.0 & (scope.bit() | Scope::Admin.bit()) != 0
    }

    /// The scopes held, in [`Scope::ALL`] order.
    pub fn iter(self) -> impl Iterator<Item = Scope> {
        Scope::ALL.into_iter().filter(move |scope| self.0 & scope.bit() != 0)
    }
}

impl FromIterator<Scope> for ScopeSet {
    fn from_iter<I: IntoIterator<Item = Scope>>(scopes: I) -> Self {
        ScopeSet(scopes.into_iter().fold(0, |bits, scope| bits | scope.bit()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_are_refused() {
        for scope in Scope::ALL {
            assert_eq!(scope.as_str().parse::<Scope>(), Ok(scope));
        }
        assert_eq!("events:read".parse::<Scope>(), Err(AuthError::UnknownScope("events:read".into())));
        assert_eq!("Admin".parse::<Scope>(), Err(AuthError::UnknownScope("Admin".into())));
    }

    #[test]
    fn admin_allows_everything_and_other_scopes_only_themselves() {
        let admin: ScopeSet = [Scope::Admin].into_iter().collect();
        assert!(Scope::ALL.into_iter().all(|scope| admin.allows(scope)));
        let reader: ScopeSet = [Scope::LogRead, Scope::StandingRead].into_iter().collect();
        assert!(reader.allows(Scope::LogRead) && reader.allows(Scope::StandingRead));
        assert!(
            !reader.allows(Scope::EventsWrite)
                && !reader.allows(Scope::PiiRead)
                && !reader.allows(Scope::Admin)
        );
        assert_eq!(reader.iter().collect::<Vec<_>>(), [Scope::StandingRead, Scope::LogRead]);
        assert!(!ScopeSet::default().allows(Scope::LogRead));
    }
}
