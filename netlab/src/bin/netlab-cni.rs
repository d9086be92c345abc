//! `netlab-cni`: netlab as a CNI plugin (see `netlab::cni`).
fn main() {
    netlab::cni::main()
}
