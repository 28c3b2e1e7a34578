//! The migrations are embedded at compile time (`embed_migrations!`); without this, cargo would
//! not rebuild when a migration is added or edited.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
