#![no_main]
//! A data record as the coordinator receives it unauthenticated (UDP datagrams and
//! `IngestRecords`), in either format: the header first (v1's varints, v2's flags) to find the
//! epoch key, then the AEAD.
use flashgate_fuzz::device;
use flashgate_protocol::data_stream::{
    epoch_key, open_in_place, CompactHeader, Direction, Header, RecordHeader,
};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok((header, len)) = Header::decode(data) {
        assert!(len <= data.len());
        match header {
            Header::V1(_) => flashgate_fuzz::check_codec!(RecordHeader, &data[..len]),
            Header::V2(_) => flashgate_fuzz::check_codec!(CompactHeader, &data[..len]),
        }
        let epoch = header
            .epoch(None)
            .expect("no state: the low bits are the epoch");
        let key = epoch_key(&device::DEVICE_KEY, Direction::Up, epoch);
        let mut record = data.to_vec();
        if let Ok(opened) = open_in_place(&key, &mut record) {
            assert!(opened.body.end <= record.len());
        }
    }
});
