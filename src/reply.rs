//! A response apiguard sends itself. Features build theirs from this type; [`crate::refusal`] picks
//! which one a refusal gets.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub body: String,
    pub headers: Vec<(&'static str, String)>,
}
