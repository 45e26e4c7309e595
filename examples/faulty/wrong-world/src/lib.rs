//! A component built against a world that is not `weir:operator`: `weir validate` and `weir run`
//! must refuse it before anything starts.

wit_bindgen::generate!({ path: "wit", world: "operator" });

struct NotAnOperator;

impl Guest for NotAnOperator {
    fn process(line: String) -> String {
        line.to_uppercase()
    }
}

export!(NotAnOperator);
