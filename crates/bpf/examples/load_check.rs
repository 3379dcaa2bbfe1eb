//! Loads the capture programs, traces every process for two seconds and
//! prints what the kernel reported: a quick check that this kernel accepts
//! them (`cargo run -p ratatosk-bpf --example load_check`, as root).

struct Count(u64, std::time::Instant);

impl ratatosk_bpf::RecordSink for Count {
    fn record(&mut self, _data: &[u8]) {
        self.0 += 1;
    }
    fn drained(&mut self) -> bool {
        self.1.elapsed().as_secs() < 2
    }
}

fn main() {
    let opts = ratatosk_bpf::LoadOptions {
        trace_all: true,
        ..Default::default()
    };
    match ratatosk_bpf::Capture::load(&opts) {
        Ok(c) => {
            let mut sink = Count(0, std::time::Instant::now());
            let counters = c.counters().expect("counters");
            c.events()
                .expect("events")
                .run(
                    std::time::Duration::from_millis(50),
                    std::time::Duration::from_millis(50),
                    &mut sink,
                )
                .expect("read");
            println!(
                "records read: {}; kernel counters: {:?}",
                sink.0,
                counters.read()
            );
        }
        Err(e) => {
            let mut s: &dyn std::error::Error = &e;
            eprintln!("error: {s}");
            while let Some(n) = s.source() {
                eprintln!("  caused by: {n}");
                s = n;
            }
            std::process::exit(1);
        }
    }
}
