//! Prints what the analysis finds in Go binaries: `cargo run -p
//! ratatosk-goinfo --example goinfo -- FILE...`.
fn main() {
    for path in std::env::args().skip(1) {
        match std::fs::read(&path) {
            Ok(data) => match ratatosk_goinfo::analyze(&data) {
                Ok(g) => println!("{path}: {g:?}"),
                Err(e) => println!("{path}: {e}"),
            },
            Err(e) => println!("{path}: {e}"),
        }
    }
}
