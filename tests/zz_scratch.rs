use nvmmio::engine::{EngineSettings, ManagedFile};
use nvmmio::persist::sim::{SimMedium, SimStorage};
#[test]
fn scratch() {
    let s = EngineSettings { log_max: 64 << 10, checkpoint_at: 32 << 10, in_place_from: 8 << 10 };
    let (mut f, _) =
        ManagedFile::open_pair(SimStorage::with_contents(&[]), SimMedium::new(4096), Some(SimMedium::new(4096)), s)
            .unwrap();
    f.write(2957, &vec![7u8; 5236]).unwrap();
    let mut buf = vec![0u8; f.size() as usize];
    f.read(0, &mut buf).unwrap();
    eprintln!("before: size {} sum {}", f.size(), buf.iter().map(|&b| b as u64).sum::<u64>());
    let j = f.begin_background_checkpoint().unwrap();
    eprintln!("job {}", j.is_some());
    drop(j);
    let mut buf = vec![0u8; f.size() as usize];
    f.read(0, &mut buf).unwrap();
    eprintln!("after: size {} sum {} expect {}", f.size(), buf.iter().map(|&b| b as u64).sum::<u64>(), 7 * 5236);
    f.checkpoint().unwrap();
    eprintln!("data {:?}", f.data().contents().len());
}
